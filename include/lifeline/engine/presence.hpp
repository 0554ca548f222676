// Who is online on this server, since when, and why those who left went
// offline: the embedded presence table (lifeline serve's GET /presence).
// Fenced by epoch: every admission of an id starts a new epoch, and an
// offline from an older one (a replaced session ending late) changes
// nothing, whatever order the two arrive in.
//
// Time is an argument (milliseconds since the Unix epoch: presence is read by
// people and other machines). Threads: none; one thread at a time (lock it
// if shared). Errors: none; unknown ids are simply absent.
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

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

struct PresenceRecord {
    std::string id;
    bool online = false;
    std::uint64_t epoch = 0;  // 1 at the id's first admission, +1 at every later one.
    std::uint64_t conn = 0;   // The connection of that epoch.
    std::string peer;
    std::int64_t since_ms = 0;                    // Online: admitted at; offline: went offline at (Unix ms).
    std::optional<DisconnectReason> last_reason;  // Why it last went offline, if it ever did.
};

class PresenceTable {
public:
    // Offline records are kept for `retention`, and at most `max_offline` of them.
    explicit PresenceTable(Duration retention = Duration::hours(24), std::size_t max_offline = 1'000'000);

    // `id` was admitted on `conn`: returns the new epoch.
    std::uint64_t online(std::string_view id, std::uint64_t conn, std::string_view peer, std::int64_t now_ms);

    struct Offline {
        bool applied = false;     // False: a newer epoch holds the id (the record is unchanged).
        std::uint64_t epoch = 0;  // The ended session's epoch (0: never online here).
    };
    // The session on `conn` ended with `reason`. Fenced: applies only while
    // `conn` is the id's current session.
    Offline offline(std::string_view id, std::uint64_t conn, DisconnectReason reason, std::int64_t now_ms);

    std::optional<PresenceRecord> get(std::string_view id, std::int64_t now_ms);
    // Every online record, then every retained offline one.
    std::vector<PresenceRecord> list(std::int64_t now_ms);
    std::size_t online_count() const { return online_; }

private:
    // A peer's address text, inline up to 23 characters (every IPv4
    // "a.b.c.d:port" fits): a std::string would put most of them on the heap.
    class PeerText {
    public:
        PeerText& operator=(std::string_view text);
        std::string str() const;

    private:
        static constexpr std::size_t kInline = 23;
        std::array<char, kInline> inline_{};
        std::uint8_t size_ = 0;              // Inline length; unused when long_ is set.
        std::unique_ptr<std::string> long_;  // Longer text (IPv6 with port).
    };
    // What is kept per id. The id itself is the map's key, stored once (a
    // record used to hold a second copy): with 26-byte device ids that was 80
    // bytes an id, and the peer's heap string 32 more (docs/BENCHMARKS.md).
    struct Stored {
        std::uint64_t epoch = 0;
        std::uint64_t conn = 0;
        std::int64_t since_ms = 0;
        PeerText peer;
        bool online = false;
        std::optional<DisconnectReason> last_reason;
    };
    static PresenceRecord record(const std::string& id, const Stored& s);
    void forget_expired(std::int64_t now_ms);

    std::int64_t retention_ms_;
    std::size_t max_offline_;
    std::unordered_map<std::string, Stored> records_;
    // Offline records in the order they went offline: (id, epoch) for expiry.
    std::deque<std::pair<std::string, std::uint64_t>> offline_order_;
    // Sessions replaced while online (conn -> their epoch), until their own
    // offline arrives: it changes nothing but still names its epoch.
    std::unordered_map<std::uint64_t, std::uint64_t> replaced_;
    std::size_t online_ = 0;
};

}  // namespace lifeline
