#include "lifeline/engine/presence.hpp"

#include <algorithm>

namespace lifeline {

PresenceTable::PeerText& PresenceTable::PeerText::operator=(std::string_view text) {
    if (text.size() <= kInline) {
        long_.reset();
        std::copy(text.begin(), text.end(), inline_.begin());
        size_ = static_cast<std::uint8_t>(text.size());
        return *this;
    }
    long_ = std::make_unique<std::string>(text);
    return *this;
}

std::string PresenceTable::PeerText::str() const { return long_ ? *long_ : std::string(inline_.data(), size_); }

PresenceRecord PresenceTable::record(const std::string& id, const Stored& s) {
    // Three 8-byte fields, the 32-byte peer, the flags: what an id costs here beside its key.
    static_assert(sizeof(Stored) <= 64, "a presence record stays within one cache line");
    PresenceRecord r;
    r.id = id;
    r.online = s.online;
    r.epoch = s.epoch;
    r.conn = s.conn;
    r.peer = s.peer.str();
    r.since_ms = s.since_ms;
    r.last_reason = s.last_reason;
    return r;
}

PresenceTable::PresenceTable(Duration retention, std::size_t max_offline)
    : retention_ms_(std::max<std::int64_t>(0, retention.ms())), max_offline_(max_offline) {}

std::uint64_t PresenceTable::online(std::string_view id, std::uint64_t conn, std::string_view peer,
                                    std::int64_t now_ms) {
    Stored& r = records_[std::string(id)];
    if (r.online) replaced_[r.conn] = r.epoch;  // Taken over: its offline will be stale.
    if (!r.online) ++online_;
    r.online = true;
    ++r.epoch;
    r.conn = conn;
    r.peer = peer;
    r.since_ms = now_ms;
    return r.epoch;
}

PresenceTable::Offline PresenceTable::offline(std::string_view id, std::uint64_t conn, DisconnectReason reason,
                                              std::int64_t now_ms) {
    if (auto stale = replaced_.find(conn); stale != replaced_.end()) {
        const std::uint64_t epoch = stale->second;
        replaced_.erase(stale);
        return {false, epoch};
    }
    auto it = records_.find(std::string(id));
    if (it == records_.end() || !it->second.online || it->second.conn != conn) return {};
    Stored& r = it->second;
    r.online = false;
    r.since_ms = now_ms;
    r.last_reason = reason;
    --online_;
    offline_order_.emplace_back(it->first, r.epoch);
    forget_expired(now_ms);
    return {true, r.epoch};
}

void PresenceTable::forget_expired(std::int64_t now_ms) {
    while (!offline_order_.empty()) {
        const auto& [id, epoch] = offline_order_.front();
        auto it = records_.find(id);
        // Stale entries (the id came back, or left again later) just drop out.
        const bool current = it != records_.end() && !it->second.online && it->second.epoch == epoch;
        const bool expired =
            current && (now_ms - it->second.since_ms >= retention_ms_ || offline_order_.size() > max_offline_);
        if (current && !expired) break;
        if (expired) records_.erase(it);
        offline_order_.pop_front();
    }
}

std::optional<PresenceRecord> PresenceTable::get(std::string_view id, std::int64_t now_ms) {
    forget_expired(now_ms);
    auto it = records_.find(std::string(id));
    if (it == records_.end()) return std::nullopt;
    return record(it->first, it->second);
}

std::vector<PresenceRecord> PresenceTable::list(std::int64_t now_ms) {
    forget_expired(now_ms);
    std::vector<PresenceRecord> out;
    out.reserve(records_.size());
    for (const auto& [id, r] : records_) out.push_back(record(id, r));
    std::stable_partition(out.begin(), out.end(), [](const PresenceRecord& r) { return r.online; });
    return out;
}

}  // namespace lifeline
