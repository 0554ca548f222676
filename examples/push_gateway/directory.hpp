// The push gateway's shared state: who is who, who is in which room, and how
// the departed left. One mutex guards it all, because both sides need it from
// their own threads: lifeline's loops (joins, closes) and httplib's pool
// (fan-out, presence). Every call holds the lock briefly and never calls out.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lifeline/connection.hpp"
#include "lifeline/disconnect_reason.hpp"

namespace push_gateway {

using lifeline::ConnectionId;
using lifeline::DisconnectReason;

inline constexpr std::size_t kMaxRoomsPerClient = 16;  // Bounds what one client can make us hold.

struct Member {
    std::string id;
    ConnectionId conn;
};

// How an admitted connection ended, for GET /presence.
struct LastSeen {
    DisconnectReason reason;
    std::string detail;
    std::int64_t at_ms = 0;
};

// Who is who, who is in which room, and how the departed left. Rooms are
// keyed by connection, not id: when a client resumes, its old connection's
// on_close must not take the new one out of its rooms.
class Directory {
public:
    enum class Join { joined, already, too_many };

    void opened(ConnectionId conn, std::string id) {
        std::lock_guard lock(mutex_);
        sessions_[conn].id = std::move(id);
    }
    Join join(ConnectionId conn, const std::string& room) {
        std::lock_guard lock(mutex_);
        Session& s = sessions_[conn];
        if (s.rooms.count(room) != 0) return Join::already;
        if (s.rooms.size() >= kMaxRoomsPerClient) return Join::too_many;
        s.rooms.insert(room);
        rooms_[room][conn] = s.id;
        return Join::joined;
    }
    bool leave(ConnectionId conn, const std::string& room) {
        std::lock_guard lock(mutex_);
        auto it = sessions_.find(conn);
        if (it == sessions_.end() || it->second.rooms.erase(room) == 0) return false;
        remove_member(room, conn);
        return true;
    }
    // Between on_open and on_close. Server::find() alone is not enough for
    // presence: it still names a connection for a moment after its on_close.
    bool is_open(ConnectionId conn) const {
        std::lock_guard lock(mutex_);
        return sessions_.count(conn) != 0;
    }
    std::vector<std::string> rooms_of(ConnectionId conn) const {
        std::lock_guard lock(mutex_);
        auto it = sessions_.find(conn);
        if (it == sessions_.end()) return {};
        return {it->second.rooms.begin(), it->second.rooms.end()};
    }
    std::vector<Member> members(const std::string& room) const {
        std::lock_guard lock(mutex_);
        std::vector<Member> out;
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return out;
        for (const auto& [conn, id] : it->second) out.push_back({id, conn});
        return out;
    }
    // Forgets the connection; returns its id and the rooms it was dropped from.
    std::pair<std::string, std::vector<std::string>> closed(ConnectionId conn, const LastSeen& how) {
        std::lock_guard lock(mutex_);
        auto it = sessions_.find(conn);
        if (it == sessions_.end()) return {};
        Session s = std::move(it->second);
        sessions_.erase(it);
        for (const std::string& room : s.rooms) remove_member(room, conn);
        // Only admitted ids get here, and admission needs a credential we
        // issued, so this grows with the ids we handed out, not with attackers.
        last_seen_[s.id] = how;
        return {s.id, {s.rooms.begin(), s.rooms.end()}};
    }
    std::optional<LastSeen> last_seen(const std::string& id) const {
        std::lock_guard lock(mutex_);
        auto it = last_seen_.find(id);
        if (it == last_seen_.end()) return std::nullopt;
        return it->second;
    }

private:
    struct Session {
        std::string id;
        std::set<std::string> rooms;
    };
    void remove_member(const std::string& room, ConnectionId conn) {
        auto r = rooms_.find(room);
        if (r == rooms_.end()) return;
        r->second.erase(conn);
        if (r->second.empty()) rooms_.erase(r);
    }

    mutable std::mutex mutex_;
    std::unordered_map<ConnectionId, Session> sessions_;
    std::map<std::string, std::unordered_map<ConnectionId, std::string>> rooms_;
    std::unordered_map<std::string, LastSeen> last_seen_;
};

}  // namespace push_gateway
