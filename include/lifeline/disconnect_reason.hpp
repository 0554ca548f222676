// Why a connection ended. One enum for the whole project: the runtime, the
// server's events, metrics labels and the lab all use these names, and the
// snake_case spellings are a stable public contract.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace lifeline {

enum class DisconnectReason : unsigned char {
    peer_closed,        // The peer closed the connection in order (FIN, or a CLOSE frame).
    peer_reset,         // The peer's kernel answered with RST (ECONNRESET, EPIPE).
    keepalive_timeout,  // Kernel keepalive probes went unanswered (ETIMEDOUT, nothing unacknowledged).
    user_timeout,       // Sent data stayed unacknowledged past TCP_USER_TIMEOUT (ETIMEDOUT with unacked data).
    heartbeat_timeout,  // No byte from the peer for the heartbeat timeout.
    idle_timeout,       // No application data for the configured idle timeout (raw mode).
    unreachable,        // ICMP said the peer cannot be reached (EHOSTUNREACH, ENETUNREACH).
    protocol_error,     // The peer broke docs/PROTOCOL.md.
    slow_consumer,      // The peer stopped reading and our output budget ran out.
    session_replaced,   // The same client id connected again; this older connection was closed.
    local_close,        // Our application closed it.
    shutdown,           // Our process is shutting down.
    rejected,           // Admission refused the HELLO (server), or the server refused us (client).
    gateway_lost,       // Fleet presence: the gateway holding the session stopped heartbeating to Redis.
};

inline constexpr std::array kAllDisconnectReasons = {
    DisconnectReason::peer_closed,      DisconnectReason::peer_reset,        DisconnectReason::keepalive_timeout,
    DisconnectReason::user_timeout,     DisconnectReason::heartbeat_timeout, DisconnectReason::idle_timeout,
    DisconnectReason::unreachable,      DisconnectReason::protocol_error,    DisconnectReason::slow_consumer,
    DisconnectReason::session_replaced, DisconnectReason::local_close,       DisconnectReason::shutdown,
    DisconnectReason::rejected,         DisconnectReason::gateway_lost,
};

// The stable snake_case name, e.g. "heartbeat_timeout".
std::string_view to_string(DisconnectReason reason);

// The reason with that name, or nullopt.
std::optional<DisconnectReason> parse_disconnect_reason(std::string_view name);

}  // namespace lifeline
