// ServerOptions: checks, and what they mean for the protocol engine.
#include <limits>
#include <string>

#include "lifeline/server.hpp"
#include "runtime/server_impl.hpp"

namespace lifeline {

Result<void> ServerOptions::validate() const {
    // The protocol's own limits (heartbeat, timeout, min_interval,
    // max_timeout, handshake_timeout, idle_timeout, max_body_size) are the
    // engine's to check; the fields have the same names here.
    if (auto v = runtime::session_config(*this, nullptr).validate(); !v) return v.error();
    if (threads < 1 || threads > 256) return Error{"threads must be 1..256 (got " + std::to_string(threads) + ")"};
    if (output_budget < 1024) return Error{"output_budget must be at least 1 KiB"};
    if (slow_consumer_after < Duration::zero()) return Error{"slow_consumer_after must be >= 0"};
    if (tick <= Duration::zero() || tick > Duration::seconds(1)) return Error{"tick must be in (0, 1s]"};
    if (push_rate > kMaxPushRate)
        return Error{"push_rate must be at most 1G (1 GiB/s); got " + std::to_string(push_rate) + " bytes/s"};
    if (auto k = keepalive.validate(); !k) return k.error().with_context("keepalive");
    return {};
}

Result<std::uint64_t> parse_byte_rate(std::string_view text) {
    auto bad = [text](std::string_view why) {
        return Error{"expected a byte rate like 64K or 1M, got '" + std::string(text) + "'" + std::string(why)};
    };
    std::size_t digits = 0;
    std::uint64_t value = 0;
    for (; digits < text.size() && text[digits] >= '0' && text[digits] <= '9'; ++digits) {
        if (__builtin_mul_overflow(value, std::uint64_t{10}, &value) ||
            __builtin_add_overflow(value, static_cast<std::uint64_t>(text[digits] - '0'), &value))
            return bad(" (too large)");
    }
    if (digits == 0) return bad("");
    const std::string_view suffix = text.substr(digits);
    unsigned shift = 0;
    if (suffix.empty()) {
        shift = 0;
    } else if (suffix == "K" || suffix == "k") {
        shift = 10;
    } else if (suffix == "M" || suffix == "m") {
        shift = 20;
    } else if (suffix == "G" || suffix == "g") {
        shift = 30;
    } else {
        return bad("");
    }
    if (shift > 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) return bad(" (too large)");
    return value << shift;
}

}  // namespace lifeline

namespace lifeline::runtime {

ServerSessionConfig session_config(const ServerOptions& o, SessionCounters* counters) {
    ServerSessionConfig c;
    c.framed = o.mode == ServerMode::framed;
    c.heartbeat = o.heartbeat;
    c.timeout = o.timeout;
    c.min_interval = o.min_interval;
    c.max_timeout = o.max_timeout;
    c.handshake_timeout = o.handshake_timeout;
    c.idle_timeout = o.idle_timeout;
    c.server_pings = o.server_pings;
    c.max_body_size = o.max_body_size;
    c.counters = counters;
    return c;
}

}  // namespace lifeline::runtime
