// ServerOptions: checks, and what they mean for the protocol engine.
#include <string>

#include "lifeline/engine/presence_publisher.hpp"
#include "lifeline/server.hpp"
#include "runtime/redis_link.hpp"
#include "runtime/server_impl.hpp"

namespace lifeline {

namespace {

Result<void> validate_redis_presence(const ServerOptions& o) {
    if (o.presence_redis.empty()) return {};
    if (!o.presence) return Error{"presence_redis needs the embedded presence on (it publishes the same records)"};
    if (auto a = runtime::parse_redis_url(o.presence_redis); !a) return a.error();
    if (o.presence_ttl < Duration::seconds(1)) return Error{"presence_ttl must be at least 1s"};
    if (o.presence_retention < Duration::seconds(1)) return Error{"presence_retention must be at least 1s"};
    if (o.presence_stream.empty()) return Error{"presence_stream must name a stream key"};
    if (presence_seen_prefix(o.presence_stream).empty())
        return Error{"presence_stream: a '{' or '}' must form a Redis hash tag like {name} (got \"" +
                     o.presence_stream + "\")"};
    if (o.presence_gateway.find_first_of(" {}") != std::string::npos)
        return Error{"presence_gateway must not contain spaces or braces (got \"" + o.presence_gateway + "\")"};
    return {};
}

}  // namespace

Result<void> ServerOptions::validate() const {
    // The protocol's own limits (heartbeat, timeout, min_interval,
    // max_timeout, handshake_timeout, idle_timeout, max_body_size) are the
    // engine's to check; the fields have the same names here.
    if (auto v = runtime::session_config(*this, nullptr).validate(); !v) return v.error();
    if (threads < 1 || threads > 256) return Error{"threads must be 1..256 (got " + std::to_string(threads) + ")"};
    if (output_budget < 1024) return Error{"output_budget must be at least 1 KiB"};
    if (slow_consumer_after < Duration::zero()) return Error{"slow_consumer_after must be >= 0"};
    if (tick <= Duration::zero() || tick > Duration::seconds(1)) return Error{"tick must be in (0, 1s]"};
    if (coalesce < Duration::zero() || coalesce > Duration::milliseconds(100))
        return Error{"coalesce must be in [0, 100ms]"};
    if (auto k = keepalive.validate(); !k) return k.error().with_context("keepalive");
    return validate_redis_presence(*this);
}

}  // namespace lifeline

namespace lifeline::runtime {

ServerSessionConfig session_config(const ServerOptions& o, SessionCounters* counters) {
    ServerSessionConfig c;
    c.framed = o.mode != ServerMode::raw;
    c.websocket = o.mode == ServerMode::websocket;
    c.heartbeat = o.heartbeat;
    c.timeout = o.timeout;
    c.min_interval = o.min_interval;
    c.max_timeout = o.max_timeout;
    c.handshake_timeout = o.handshake_timeout;
    c.idle_timeout = o.idle_timeout;
    c.server_pings = o.server_pings;
    c.admission = o.mode != ServerMode::raw;         // ServerCallbacks::on_hello decides.
    c.server_pings = o.server_pings || c.websocket;  // WebSocket clients (browsers) never ping.
    c.max_body_size = o.max_body_size;
    c.counters = counters;
    return c;
}

}  // namespace lifeline::runtime
