#include "lifeline/engine/presence.hpp"

#include <algorithm>

namespace lifeline {

PresenceTable::PresenceTable(Duration retention, std::size_t max_offline)
    : retention_ms_(std::max<std::int64_t>(0, retention.ms())), max_offline_(max_offline) {}

std::uint64_t PresenceTable::online(std::string_view id, std::uint64_t conn, std::string_view peer,
                                    std::int64_t now_ms) {
    PresenceRecord& r = records_[std::string(id)];
    if (r.id.empty()) r.id = id;
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
    PresenceRecord& r = it->second;
    r.online = false;
    r.since_ms = now_ms;
    r.last_reason = reason;
    --online_;
    offline_order_.emplace_back(r.id, r.epoch);
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
    return it->second;
}

std::vector<PresenceRecord> PresenceTable::list(std::int64_t now_ms) {
    forget_expired(now_ms);
    std::vector<PresenceRecord> out;
    out.reserve(records_.size());
    for (const auto& [id, r] : records_) out.push_back(r);
    std::stable_partition(out.begin(), out.end(), [](const PresenceRecord& r) { return r.online; });
    return out;
}

}  // namespace lifeline
