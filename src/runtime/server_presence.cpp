// The server's embedded presence: client-chosen ids go online when admitted
// (admit_session, which also hands the id to its new holder) and offline
// (fenced by epoch) when their session ends; GET /presence and
// Server::presence() read it. All of it is the SessionDirectory's.
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "lifeline/server.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_redis_presence.hpp"

namespace lifeline {

namespace {

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

nlohmann::json to_json(const PresenceRecord& r, const std::string& gateway) {
    nlohmann::json j;
    j["id"] = r.id;
    j["online"] = r.online;
    j["gateway"] = gateway;  // This server: its --gateway name, or HOSTNAME:PORT.
    j["epoch"] = r.epoch;
    j["conn"] = r.conn;
    j["peer"] = r.peer;
    j["since_ms"] = r.since_ms;
    if (r.last_reason) j["last_reason"] = std::string(to_string(*r.last_reason));
    return j;
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

const std::uint8_t* Server::Impl::admit_session(std::string_view id, runtime::ConnectionRef owner,
                                                const std::string& peer) {
    SessionDirectory::Admitted a;
    {
        std::lock_guard lock(sessions_mutex);
        // Under the lock: Redis hears of two sessions of one id in the order the directory did.
        if (redis_presence) redis_presence->online(std::string(id), owner.conn, peer);
        a = sessions.admit(id, owner, peer, unix_ms_now());
    }
    // Online before the holder is closed, wherever it lives: its offline is
    // then always the superseded one, on every arrangement of loops.
    if (a.replaced)
        close_connection(*a.replaced, DisconnectReason::session_replaced, CloseCode::session_replaced,
                         "the same client connected again");
    return a.stored;
}

PresenceOffline Server::Impl::presence_offline(std::string_view id, std::uint64_t conn, DisconnectReason reason,
                                               std::int64_t detected_after_ms) {
    if (!options.presence) return {};
    std::lock_guard lock(sessions_mutex);
    if (redis_presence) redis_presence->offline(std::string(id), conn, reason, detected_after_ms);
    return sessions.offline(id, conn, reason, unix_ms_now());
}

std::uint64_t Server::Impl::presence_epoch(std::string_view id, std::uint64_t conn) const {
    std::lock_guard lock(sessions_mutex);
    std::optional<PresenceRecord> r = sessions.presence(id, unix_ms_now());
    return r && r->online && r->conn == conn ? r->epoch : 0;
}

std::string Server::Impl::presence_json(const std::string& id) const {
    std::lock_guard lock(sessions_mutex);
    std::optional<PresenceRecord> r = sessions.presence(id, unix_ms_now());
    return r ? dump(to_json(*r, gateway_name())) : std::string();
}

std::string Server::Impl::presence_list_json() const {
    std::lock_guard lock(sessions_mutex);
    nlohmann::json all = nlohmann::json::array();
    const std::string gateway = gateway_name();
    for (const PresenceRecord& r : sessions.presence_list(unix_ms_now())) all.push_back(to_json(r, gateway));
    return dump(all);
}

std::string Server::Impl::gateway_name() const {
    return options.presence_gateway.empty() ? default_presence_gateway(endpoint.to_string()) : options.presence_gateway;
}

std::optional<PresenceRecord> Server::presence(std::string_view client_id) const {
    std::lock_guard lock(impl_->sessions_mutex);
    return impl_->sessions.presence(client_id, unix_ms_now());
}

}  // namespace lifeline
