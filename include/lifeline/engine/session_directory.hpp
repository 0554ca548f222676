// Every client-chosen id a server knows, stored once: who holds it (the
// takeover rule of docs/PROTOCOL.md, "Takeover and admission"), the resume
// token its WELCOME issued, and its presence (online since when, epoch,
// connection, peer, and offline records kept for the retention). It is the
// one implementation of those rules: lifeline's Server and the simulator
// (src/sim) drive this object. The server used to keep the id three times
// (its session, a SessionRegistry, a PresenceTable), each copy with its own
// heap buffer and hash node: 466 bytes an idle connection with a 27-byte id
// (docs/BENCHMARKS.md). Here an id costs one 72-byte entry and a 4-byte
// index slot.
//
//   on HELLO with an id:   IdClaim c = dir.check(id, hello_token);
//                          refuse (CLOSE id_in_use) unless c.may_take_over()
//   on admit:              token = dir.token_for(id, conn); WELCOME with it;
//                          Admitted a = dir.admit(id, holder, peer, now_ms);
//                          close *a.replaced with session_replaced;
//                          the session refers to a.stored from here on
//   on close:              dir.offline(id, conn, reason, now_ms); dir.release(id, holder);
//   when nothing refers to a.stored any more:  dir.unpin(id)
//
// Resume tokens are not stored: a token is HMAC-SHA256(key, conn, id) cut to
// 16 bytes, with a key from the caller's CSPRNG (this header reads no
// randomness), so only the holder's connection number is kept. It is as
// unguessable as a random token (the key never leaves the process) and, as
// before, valid only while that connection holds the id; it is compared in
// constant time (resume_token_matches).
//
// Presence is fenced by epoch: every admission of an id starts a new epoch,
// and an offline from an older one (a replaced session ending late) changes
// nothing, whatever order the two arrive in. Offline records are kept for
// `retention` and at most `max_offline` of them. Time is an argument (Unix
// ms: presence is read by people and other machines).
//
// Threads: none; one thread at a time (lock it if shared), except that the
// bytes of a stored id may be read by any thread while it is pinned: they
// never move or change until unpin(). Errors: none; unknown ids are absent.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lifeline/engine/presence.hpp"
#include "lifeline/engine/resume_token.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// Who holds an id: a connection on a loop. `conn` numbers connections
// uniquely for the process' life; (loop, slot) finds it.
struct SessionHolder {
    std::uint32_t loop = 0;
    std::uint32_t slot = 0;
    std::uint64_t conn = 0;
    bool operator==(const SessionHolder&) const = default;
};

// An id as the directory stores it: a length byte, then the bytes.
inline std::string_view stored_id_text(const std::uint8_t* stored) {
    return stored == nullptr ? std::string_view()
                             : std::string_view(reinterpret_cast<const char*>(stored + 1), stored[0]);
}

struct SessionDirectoryConfig {
    bool presence = true;                      // Keep presence records (else holders and tokens only).
    Duration retention = Duration::hours(24);  // Offline records are kept this long...
    std::size_t max_offline = 1'000'000;       // ...and at most this many of them.
    std::array<std::uint8_t, 32> token_key{};  // From a CSPRNG, once per directory.
};

class SessionDirectory {
public:
    // Ids known at once (held, pinned or with a presence record). A server
    // holds at most one per connection plus max_offline; more is a bug.
    static constexpr std::size_t kMaxIds = std::size_t{1} << 24;

    explicit SessionDirectory(const SessionDirectoryConfig& config);
    ~SessionDirectory();
    SessionDirectory(const SessionDirectory&) = delete;
    SessionDirectory& operator=(const SessionDirectory&) = delete;

    // The resume token a WELCOME to connection `conn` for `id` carries.
    ResumeToken token_for(std::string_view id, std::uint64_t conn) const;
    // Is `id` held, and is `token` its holder's?
    IdClaim check(std::string_view id, std::string_view token) const;

    struct Admitted {
        const std::uint8_t* stored = nullptr;   // The id (stored_id_text), pinned until unpin().
        std::optional<SessionHolder> replaced;  // The previous holder: it must end with session_replaced.
        std::uint64_t epoch = 0;                // The presence epoch this admission started (0: no presence).
    };
    // `id` is now `holder`'s; with presence, it is online from `now_ms` at
    // `peer` in a new epoch. Pins the id once (unpin() it once).
    Admitted admit(std::string_view id, const SessionHolder& holder, std::string_view peer, std::int64_t now_ms);
    // `holder` closed: the id is free again, unless a newer holder took it. True if released.
    bool release(std::string_view id, const SessionHolder& holder);
    // One admit()'s pin is over: nothing reads its stored bytes any more.
    void unpin(std::string_view id);
    // The session on `conn` ended with `reason`. Fenced: applies only while
    // `conn` is the id's current session; a replaced one's (once) still names its epoch.
    PresenceOffline offline(std::string_view id, std::uint64_t conn, DisconnectReason reason, std::int64_t now_ms);

    std::optional<SessionHolder> find(std::string_view id) const;
    std::optional<PresenceRecord> presence(std::string_view id, std::int64_t now_ms);
    // Every online record, then every retained offline one.
    std::vector<PresenceRecord> presence_list(std::int64_t now_ms);
    std::size_t online_count() const { return online_; }
    std::size_t size() const { return size_; }

private:
    struct Entry;
    struct FreeBlock {
        void operator()(Entry* block) const;
    };
    static constexpr std::uint32_t kNone = UINT32_MAX;

    // The open-addressing index (linear probing, 4 bytes a slot).
    std::size_t home(std::string_view id) const;  // The id's first slot.
    std::uint32_t lookup(std::string_view id) const;
    std::uint32_t insert(std::string_view id);
    void place(std::uint32_t number);
    void unindex(std::uint32_t number);
    void grow_index();
    // Entries, in blocks that never move (stored ids are read through pointers).
    Entry& at(std::uint32_t number) const;
    std::uint32_t allocate();
    void free_if_unused(std::uint32_t number);
    void forget_record(std::uint32_t number);
    void set_peer(std::uint32_t number, std::string_view peer);
    std::string peer_of(std::uint32_t number) const;
    PresenceRecord record(std::uint32_t number) const;
    void forget_expired(std::int64_t now_ms);

    SessionDirectoryConfig config_;
    struct FreeIndex {
        void operator()(std::uint32_t* index) const;
    };
    // Entry number + 1; 0 is an empty slot. A power of two long (index_size_), from calloc.
    std::unique_ptr<std::uint32_t[], FreeIndex> index_;
    std::size_t index_size_ = 0;
    std::vector<std::unique_ptr<Entry, FreeBlock>> blocks_;
    std::uint32_t allocated_ = 0;      // Entries handed out from the blocks so far.
    std::vector<std::uint32_t> free_;  // Entries handed out and freed since.
    std::size_t size_ = 0;
    std::size_t online_ = 0;
    // Peers that are not "a.b.c.d:port" (IPv6, tests' own text), by entry.
    std::unordered_map<std::uint32_t, std::string> peer_texts_;
    // Offline records in the order they went offline: (entry, epoch) for expiry.
    std::deque<std::pair<std::uint32_t, std::uint64_t>> offline_order_;
    // Sessions replaced while online (conn -> their epoch), until their own offline arrives.
    std::unordered_map<std::uint64_t, std::uint64_t> replaced_;
};

}  // namespace lifeline
