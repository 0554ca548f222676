// What the server's loops share: options, callbacks, metrics, and the session
// table (client id -> connection) that takeover needs. Internal to
// src/runtime; see server.cpp for the design.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "lifeline/engine/presence.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/session_directory.hpp"
#include "lifeline/engine/tls.hpp"
#include "lifeline/server.hpp"
#include "lifeline/testing.hpp"
#include "net/endpoint.hpp"
#include "runtime/http_endpoint.hpp"
#include "runtime/metrics.hpp"

namespace lifeline::runtime {

class Worker;
class RedisPresence;

// Where a connection lives: its loop, its slot there, and its number (a slot
// is reused; the number is not).
using ConnectionRef = SessionHolder;

// The engine's rules, configured from the server's options.
ServerSessionConfig session_config(const ServerOptions& options, SessionCounters* counters);

}  // namespace lifeline::runtime

namespace lifeline {

struct Server::Impl {
    // The directory's configuration is the options' (and a fresh token key).
    explicit Impl(const ServerOptions& o);
    ~Impl();  // In server.cpp, where RedisPresence is complete.
    ServerOptions options;
    testing::ServerFaults faults;
    ServerSessionConfig session;      // From options; every connection's ServerSession uses it.
    std::shared_ptr<TlsContext> tls;  // options.tls_cert/tls_key loaded; null without TLS.
    ServerCallbacks callbacks;
    net::Endpoint endpoint;
    // Every client-chosen id: who holds it, its resume token, and its
    // presence (GET /presence), the id stored once. Declared before the
    // workers: connections refer to stored ids until they are destroyed.
    mutable std::mutex sessions_mutex;
    mutable SessionDirectory sessions;  // Under sessions_mutex (reads expire old records).
    std::vector<std::unique_ptr<runtime::Worker>> workers;
    runtime::ServerMetrics metrics;
    std::atomic<std::uint64_t> next_conn_id{1};
    std::atomic<bool> stop_requested{false};
    std::unique_ptr<runtime::HttpEndpoint> http;
    // Fleet presence on Redis (options.presence_redis), or null. Destroyed
    // before the workers: its thread is joined first.
    std::unique_ptr<runtime::RedisPresence> redis_presence;

    void emit(const Event& e) const {
        if (callbacks.on_event) callbacks.on_event(e);
    }
    // What admission needs to know about `id`: is it held, and is `token` the holder's?
    IdClaim check_claim(std::string_view id, std::string_view token);
    // The resume token the WELCOME of connection `conn` for `id` carries.
    ResumeToken resume_token(std::string_view id, std::uint64_t conn) const;
    // `id` is now `owner`'s (online at `peer`, with presence): the connection
    // that held it (on any loop) ends with session_replaced. Returns the
    // stored id, pinned until unpin_session(id).
    const std::uint8_t* admit_session(std::string_view id, runtime::ConnectionRef owner, const std::string& peer);
    // Ends `ref` (if it is still that connection) with a CLOSE frame, on its own loop.
    void close_connection(runtime::ConnectionRef ref, DisconnectReason reason, CloseCode code, std::string text);
    // `owner` closed: its id is free again, unless a newer connection took it.
    void release_session(std::string_view id, runtime::ConnectionRef owner);
    // Nothing reads admit_session()'s stored id any more.
    void unpin_session(std::string_view id);
    // Presence of client-chosen ids; time is the wall clock (Unix ms).
    PresenceOffline presence_offline(std::string_view id, std::uint64_t conn, DisconnectReason reason,
                                     std::int64_t detected_after_ms);
    std::uint64_t presence_epoch(std::string_view id, std::uint64_t conn) const;  // 0: not its session.
    std::string presence_json(const std::string& id) const;                       // "" when unknown.
    std::string presence_list_json() const;
    std::string gateway_name() const;  // options.presence_gateway, or HOSTNAME:PORT.
    std::string metrics_text_unlocked() const;
    std::string connections_json_unlocked() const;
};

}  // namespace lifeline

namespace lifeline::runtime {

// Server::create() and testing::create_server(): checks, binds, starts the loops.
Result<std::unique_ptr<Server::Impl>> make_server(const ServerOptions& options, ServerCallbacks callbacks,
                                                  const testing::ServerFaults& faults);

}  // namespace lifeline::runtime
