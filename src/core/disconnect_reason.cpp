#include "lifeline/disconnect_reason.hpp"

namespace lifeline {

std::string_view to_string(DisconnectReason reason) {
    switch (reason) {
        case DisconnectReason::peer_closed:
            return "peer_closed";
        case DisconnectReason::peer_reset:
            return "peer_reset";
        case DisconnectReason::keepalive_timeout:
            return "keepalive_timeout";
        case DisconnectReason::user_timeout:
            return "user_timeout";
        case DisconnectReason::heartbeat_timeout:
            return "heartbeat_timeout";
        case DisconnectReason::idle_timeout:
            return "idle_timeout";
        case DisconnectReason::unreachable:
            return "unreachable";
        case DisconnectReason::protocol_error:
            return "protocol_error";
        case DisconnectReason::slow_consumer:
            return "slow_consumer";
        case DisconnectReason::session_replaced:
            return "session_replaced";
        case DisconnectReason::local_close:
            return "local_close";
        case DisconnectReason::shutdown:
            return "shutdown";
        case DisconnectReason::rejected:
            return "rejected";
        case DisconnectReason::gateway_lost:
            return "gateway_lost";
    }
    return "unknown";
}

std::optional<DisconnectReason> parse_disconnect_reason(std::string_view name) {
    for (DisconnectReason r : kAllDisconnectReasons) {
        if (to_string(r) == name) return r;
    }
    return std::nullopt;
}

}  // namespace lifeline
