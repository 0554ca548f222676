#include "lifeline/engine/session_directory.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>

#include "lifeline/check.hpp"

namespace lifeline {

namespace {

// 4096 entries (320 KiB) a block: few blocks, and the memory of one not yet
// handed out is never touched (so never resident).
constexpr std::uint32_t kBlockEntries = 4096;
constexpr std::size_t kInlineId = 31;          // Ids up to this long live in the entry itself.
constexpr std::size_t kMinIndexSlots = 32768;  // The index's first size (grow_index()).

enum Flag : std::uint8_t {
    kUsed = 1,        // Handed out, not freed.
    kHeld = 2,        // A connection holds the id (holder is it).
    kRecord = 4,      // A presence record exists (online, or offline and retained).
    kOnline = 8,      // The record is online.
    kHasReason = 16,  // reason says why it last went offline.
    kPeerText = 32,   // The peer is in peer_texts_, not in peer_v4/peer_port.
    kLongId = 64,     // The id is on the heap (the entry holds a pointer to it).
};

// "a.b.c.d:port", as net::format_address writes an IPv4 peer.
std::string format_v4(std::uint32_t address, std::uint16_t port) {
    std::string out;
    for (int i = 0; i < 4; ++i) {
        if (i > 0) out += '.';
        out += std::to_string((address >> (24 - 8 * i)) & 0xFF);
    }
    out += ':';
    out += std::to_string(port);
    return out;
}

// The reverse, for text that format_v4 would write back exactly (else false).
bool parse_v4(std::string_view text, std::uint32_t& address, std::uint16_t& port) {
    std::uint32_t parts[5] = {};
    std::size_t part = 0;
    std::size_t digits = 0;
    for (char c : text) {
        const bool separator = part < 3 ? c == '.' : c == ':';
        if (separator && digits > 0 && part < 4) {
            ++part;
            digits = 0;
        } else if (c >= '0' && c <= '9' && digits < 5) {
            parts[part] = parts[part] * 10 + static_cast<std::uint32_t>(c - '0');
            ++digits;
        } else {
            return false;
        }
    }
    if (part != 4 || digits == 0 || parts[4] > 65535) return false;
    for (int i = 0; i < 4; ++i) {
        if (parts[i] > 255) return false;
    }
    address = parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3];
    port = static_cast<std::uint16_t>(parts[4]);
    return format_v4(address, port) == text;  // Leading zeros and the like stay text.
}

}  // namespace

// One id. 72 bytes, aligned to 8 so that `id` (a stored id's address) is too.
struct SessionDirectory::Entry {
    // The holder while kHeld (conn, loop, slot); conn is also the presence record's connection.
    std::uint64_t conn = 0;
    std::uint64_t epoch = 0;
    std::int64_t since_ms = 0;
    std::uint32_t slot = 0;
    // admit()s not yet unpin()ned: their stored bytes must stay. One per
    // connection object, and a process has far fewer than 2^24 of those.
    std::uint32_t pins : 24 = 0;
    std::uint32_t loop : 8 = 0;  // A server has at most 256 loops.
    std::uint32_t peer_v4 = 0;
    std::uint16_t peer_port = 0;
    std::uint8_t reason = 0;  // DisconnectReason, with kHasReason.
    std::uint8_t flags = 0;
    // The id: its length, then its bytes; with kLongId, a pointer to the same on the heap.
    alignas(8) std::array<std::uint8_t, 1 + kInlineId> id{};

    SessionHolder holder() const { return {loop, slot, conn}; }
    void hold(const SessionHolder& h) {
        LIFELINE_CHECK(h.loop < 256, "a holder's loop fits the entry's 8 bits");
        loop = h.loop & 0xFF;  // Checked above.
        slot = h.slot;
        conn = h.conn;
    }
    bool has(Flag f) const { return (flags & f) != 0; }
    const std::uint8_t* stored() const {
        if (!has(kLongId)) return id.data();
        const std::uint8_t* p = nullptr;
        std::memcpy(&p, id.data(), sizeof(p));
        return p;
    }
    std::string_view text() const { return stored_id_text(stored()); }
};

void SessionDirectory::FreeBlock::operator()(Entry* block) const { ::operator delete(block); }

SessionDirectory::SessionDirectory(const SessionDirectoryConfig& config) : config_(config) {
    static_assert(sizeof(Entry) == 72, "an id's entry is what every connection with an id pays");
}

SessionDirectory::~SessionDirectory() {
    for (std::uint32_t n = 0; n < allocated_; ++n) {
        if (at(n).has(kLongId)) delete[] at(n).stored();
    }
}

ResumeToken SessionDirectory::token_for(std::string_view id, std::uint64_t conn) const {
    // RFC 2104 HMAC over the connection number (little-endian) and the id.
    std::array<std::uint8_t, 8 + 255> message{};
    LIFELINE_CHECK(id.size() <= 255, "a client id is at most 255 bytes");
    for (int i = 0; i < 8; ++i) message[i] = static_cast<std::uint8_t>(conn >> (8 * i));
    std::memcpy(message.data() + 8, id.data(), id.size());
    std::array<std::uint8_t, EVP_MAX_MD_SIZE> mac{};
    unsigned mac_size = 0;
    const unsigned char* r = HMAC(EVP_sha256(), config_.token_key.data(), static_cast<int>(config_.token_key.size()),
                                  message.data(), 8 + id.size(), mac.data(), &mac_size);
    LIFELINE_CHECK(r != nullptr && mac_size >= kResumeTokenSize, "HMAC-SHA256 always succeeds");
    ResumeToken token{};
    std::copy_n(mac.begin(), token.size(), token.begin());
    return token;
}

IdClaim SessionDirectory::check(std::string_view id, std::string_view token) const {
    const std::uint32_t n = lookup(id);
    if (n == kNone || !at(n).has(kHeld)) return {};
    return {true, resume_token_matches(token, token_for(id, at(n).conn))};
}

SessionDirectory::Admitted SessionDirectory::admit(std::string_view id, const SessionHolder& holder,
                                                   std::string_view peer, std::int64_t now_ms) {
    std::uint32_t n = lookup(id);
    if (n == kNone) n = insert(id);
    Entry& e = at(n);
    Admitted a;
    a.stored = e.stored();
    if (e.has(kHeld)) a.replaced = e.holder();
    if (config_.presence) {
        if (e.has(kOnline)) {
            replaced_[e.conn] = e.epoch;  // Taken over: its offline will be stale.
        } else {
            ++online_;
        }
        e.flags |= kRecord | kOnline;
        ++e.epoch;
        e.since_ms = now_ms;
        set_peer(n, peer);
        a.epoch = e.epoch;
    }
    e.hold(holder);
    e.flags |= kHeld;
    LIFELINE_CHECK(e.pins < (1u << 24) - 1, "pins fit their 24 bits");
    ++e.pins;
    return a;
}

bool SessionDirectory::release(std::string_view id, const SessionHolder& holder) {
    const std::uint32_t n = lookup(id);
    if (n == kNone || !at(n).has(kHeld) || !(at(n).holder() == holder)) return false;
    at(n).flags &= ~kHeld;
    free_if_unused(n);
    return true;
}

void SessionDirectory::unpin(std::string_view id) {
    const std::uint32_t n = lookup(id);
    LIFELINE_CHECK(n != kNone && at(n).pins > 0, "unpin() matches an admit() (else a stored id could be freed in use)");
    --at(n).pins;
    free_if_unused(n);
}

PresenceOffline SessionDirectory::offline(std::string_view id, std::uint64_t conn, DisconnectReason reason,
                                          std::int64_t now_ms) {
    if (auto stale = replaced_.find(conn); stale != replaced_.end()) {
        const std::uint64_t epoch = stale->second;
        replaced_.erase(stale);
        return {false, epoch};
    }
    const std::uint32_t n = lookup(id);
    if (n == kNone || !at(n).has(kOnline) || at(n).conn != conn) return {};
    Entry& e = at(n);
    e.flags = static_cast<std::uint8_t>((e.flags & ~kOnline) | kHasReason);
    e.since_ms = now_ms;
    e.reason = static_cast<std::uint8_t>(reason);
    --online_;
    const std::uint64_t epoch = e.epoch;
    offline_order_.emplace_back(n, epoch);
    forget_expired(now_ms);  // May free the entry: `e` is not used past here.
    return {true, epoch};
}

std::optional<SessionHolder> SessionDirectory::find(std::string_view id) const {
    const std::uint32_t n = lookup(id);
    if (n == kNone || !at(n).has(kHeld)) return std::nullopt;
    return at(n).holder();
}

std::optional<PresenceRecord> SessionDirectory::presence(std::string_view id, std::int64_t now_ms) {
    forget_expired(now_ms);
    const std::uint32_t n = lookup(id);
    if (n == kNone || !at(n).has(kRecord)) return std::nullopt;
    return record(n);
}

std::vector<PresenceRecord> SessionDirectory::presence_list(std::int64_t now_ms) {
    forget_expired(now_ms);
    std::vector<PresenceRecord> out;
    for (std::uint32_t n = 0; n < allocated_; ++n) {
        if (at(n).has(kUsed) && at(n).has(kRecord)) out.push_back(record(n));
    }
    std::stable_partition(out.begin(), out.end(), [](const PresenceRecord& r) { return r.online; });
    return out;
}

PresenceRecord SessionDirectory::record(std::uint32_t n) const {
    const Entry& e = at(n);
    PresenceRecord r;
    r.id = std::string(e.text());
    r.online = e.has(kOnline);
    r.epoch = e.epoch;
    r.conn = e.conn;
    r.peer = peer_of(n);
    r.since_ms = e.since_ms;
    if (e.has(kHasReason)) r.last_reason = static_cast<DisconnectReason>(e.reason);
    return r;
}

void SessionDirectory::forget_expired(std::int64_t now_ms) {
    const std::int64_t retention_ms = std::max<std::int64_t>(0, config_.retention.ms());
    while (!offline_order_.empty()) {
        const auto [n, epoch] = offline_order_.front();
        // An entry's latest offline is its last item here, and a record is
        // only forgotten at its latest: an entry freed (and reused) has no
        // items left. Stale items (it came back, or left again) just drop out.
        const Entry& e = at(n);
        const bool current = e.has(kUsed) && e.has(kRecord) && !e.has(kOnline) && e.epoch == epoch;
        const bool expired =
            current && (now_ms - e.since_ms >= retention_ms || offline_order_.size() > config_.max_offline);
        if (current && !expired) break;
        offline_order_.pop_front();
        if (expired) forget_record(n);
    }
}

void SessionDirectory::forget_record(std::uint32_t n) {
    Entry& e = at(n);
    if (e.has(kPeerText)) peer_texts_.erase(n);
    e.flags &= ~(kRecord | kOnline | kHasReason | kPeerText);
    e.epoch = 0;  // A later admission starts again at epoch 1, as a fresh record would.
    free_if_unused(n);
}

void SessionDirectory::set_peer(std::uint32_t n, std::string_view peer) {
    Entry& e = at(n);
    if (parse_v4(peer, e.peer_v4, e.peer_port)) {
        if (e.has(kPeerText)) peer_texts_.erase(n);
        e.flags &= ~kPeerText;
        return;
    }
    peer_texts_[n] = std::string(peer);
    e.flags |= kPeerText;
}

std::string SessionDirectory::peer_of(std::uint32_t n) const {
    const Entry& e = at(n);
    if (!e.has(kPeerText)) return format_v4(e.peer_v4, e.peer_port);
    return peer_texts_.at(n);
}

// ---- Entries ---------------------------------------------------------------------

SessionDirectory::Entry& SessionDirectory::at(std::uint32_t n) const {
    LIFELINE_CHECK(n < allocated_, "an entry number names an entry handed out");
    return blocks_[n / kBlockEntries].get()[n % kBlockEntries];
}

std::uint32_t SessionDirectory::allocate() {
    LIFELINE_CHECK(size_ < kMaxIds, "at most kMaxIds ids at once");
    if (!free_.empty()) {
        const std::uint32_t n = free_.back();
        free_.pop_back();
        return n;
    }
    if (allocated_ % kBlockEntries == 0) {
        // Raw memory: entries are constructed as they are handed out.
        void* block = ::operator new(sizeof(Entry) * kBlockEntries);
        blocks_.emplace_back(static_cast<Entry*>(block));
    }
    const std::uint32_t n = allocated_++;
    new (&blocks_[n / kBlockEntries].get()[n % kBlockEntries]) Entry();
    return n;
}

std::uint32_t SessionDirectory::insert(std::string_view id) {
    LIFELINE_CHECK(id.size() <= 255, "a client id is at most 255 bytes (its length is one byte)");
    const std::uint32_t n = allocate();
    Entry& e = at(n);
    e = Entry();
    e.flags = kUsed;
    if (id.size() <= kInlineId) {
        e.id[0] = static_cast<std::uint8_t>(id.size());
        std::memcpy(e.id.data() + 1, id.data(), id.size());
    } else {
        auto* heap = new std::uint8_t[1 + id.size()];
        heap[0] = static_cast<std::uint8_t>(id.size());
        std::memcpy(heap + 1, id.data(), id.size());
        std::memcpy(e.id.data(), &heap, sizeof(heap));
        e.flags |= kLongId;
    }
    ++size_;
    if (size_ * 4 > index_size_ * 3) grow_index();  // Load at most 3/4: short probe runs.
    place(n);
    return n;
}

void SessionDirectory::free_if_unused(std::uint32_t n) {
    Entry& e = at(n);
    if (e.has(kHeld) || e.has(kRecord) || e.pins > 0) return;
    unindex(n);
    if (e.has(kLongId)) delete[] e.stored();
    e.flags = 0;
    free_.push_back(n);
    --size_;
}

// ---- The index ---------------------------------------------------------------------

// Not stored in the entry (it would cost 8 bytes there, with the padding):
// computed again where needed.
std::size_t SessionDirectory::home(std::string_view id) const {
    return std::hash<std::string_view>{}(id) & (index_size_ - 1);
}

std::uint32_t SessionDirectory::lookup(std::string_view id) const {
    if (index_size_ == 0) return kNone;
    const std::size_t mask = index_size_ - 1;
    for (std::size_t i = home(id);; i = (i + 1) & mask) {
        const std::uint32_t slot = index_[i];
        if (slot == 0) return kNone;
        if (at(slot - 1).text() == id) return slot - 1;
    }
}

void SessionDirectory::place(std::uint32_t n) {
    const std::size_t mask = index_size_ - 1;
    std::size_t i = home(at(n).text());
    while (index_[i] != 0) i = (i + 1) & mask;
    index_[i] = n + 1;
}

void SessionDirectory::FreeIndex::operator()(std::uint32_t* index) const { std::free(index); }

void SessionDirectory::grow_index() {
    // Straight to 32,768 slots (128 KiB) the first time, then doubling. malloc
    // hands a block that large over as fresh pages of its own, so calloc need
    // not write them: only the pages ids land on become resident, and an
    // outgrown index goes back to the system when freed. Doubling from 1,024
    // slots instead left each outgrown copy (4 to 64 KiB, 124 KiB in all) as
    // free space in malloc's heap, resident: 6.5 bytes an id at 19,000
    // (docs/BENCHMARKS.md, "Where an idle connection's bytes go").
    const std::size_t slots = index_size_ == 0 ? kMinIndexSlots : index_size_ * 2;
    auto* fresh = static_cast<std::uint32_t*>(std::calloc(slots, sizeof(std::uint32_t)));
    if (fresh == nullptr) throw std::bad_alloc();
    const std::unique_ptr<std::uint32_t[], FreeIndex> old(index_.release());
    const std::size_t old_size = index_size_;
    index_.reset(fresh);
    index_size_ = slots;
    for (std::size_t i = 0; i < old_size; ++i) {
        if (old[i] != 0) place(old[i] - 1);
    }
}

// Backward-shift deletion (Knuth, TAOCP vol. 3, 6.4, algorithm R): no
// tombstones, so lookups stay as short as if the id had never been there.
void SessionDirectory::unindex(std::uint32_t n) {
    const std::size_t mask = index_size_ - 1;
    std::size_t hole = home(at(n).text());
    while (index_[hole] != n + 1) hole = (hole + 1) & mask;
    for (std::size_t j = (hole + 1) & mask; index_[j] != 0; j = (j + 1) & mask) {
        const std::size_t home_j = home(at(index_[j] - 1).text());
        // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
        const bool stays = hole <= j ? (home_j > hole && home_j <= j) : (home_j > hole || home_j <= j);
        if (stays) continue;
        index_[hole] = index_[j];
        hole = j;
    }
    index_[hole] = 0;
}

}  // namespace lifeline
