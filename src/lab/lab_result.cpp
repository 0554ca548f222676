#include "lab/lab_result.hpp"

namespace lifeline::lab {

std::string_view to_string(Fault fault) {
    switch (fault) {
        case Fault::cable_pull:
            return "cable_pull";
        case Fault::blackhole_out:
            return "blackhole_out";
        case Fault::blackhole_in:
            return "blackhole_in";
        case Fault::freeze:
            return "freeze";
        case Fault::crash:
            return "crash";
        case Fault::host_reboot:
            return "host_reboot";
        case Fault::transfer_cut:
            return "transfer_cut";
        case Fault::stuck_reader:
            return "stuck_reader";
        case Fault::server_stall:
            return "server_stall";
        case Fault::nat_expiry:
            return "nat_expiry";
        case Fault::server_reboot:
            return "server_reboot";
    }
    return "unknown";
}

std::string_view describe(Fault fault) {
    switch (fault) {
        case Fault::cable_pull:
            return "the client's switch port goes down: silence both ways, no RST, no ICMP";
        case Fault::blackhole_out:
            return "the switch drops every packet from the client";
        case Fault::blackhole_in:
            return "the switch drops every packet to the client";
        case Fault::freeze:
            return "the client process is SIGSTOPped; its kernel still answers";
        case Fault::crash:
            return "the client process is SIGKILLed; its kernel closes the socket";
        case Fault::host_reboot:
            return "cable pulled, client host wiped, cable back: the next packet meets a RST";
        case Fault::transfer_cut:
            return "the cable is pulled while the server streams to the client";
        case Fault::stuck_reader:
            return "the client stops reading while the server keeps sending";
        case Fault::server_stall:
            return "the server is stopped for twice its heartbeat timeout, then resumed";
        case Fault::nat_expiry:
            return "a NAT forgets flows idle past its timeout; then the client sends messages";
        case Fault::server_reboot:
            return "the server host loses all state and comes back: the client's next packet meets a RST";
    }
    return "unknown";
}

std::string_view to_string(Mechanism mechanism) {
    switch (mechanism) {
        case Mechanism::none:
            return "none";
        case Mechanism::keepalive:
            return "keepalive";
        case Mechanism::keepalive_user_timeout:
            return "keepalive+user_timeout";
        case Mechanism::heartbeat:
            return "heartbeat";
        case Mechanism::websocket:
            return "websocket";
        case Mechanism::all:
            return "all";
        case Mechanism::run:
            return "run";
        case Mechanism::protect:
            return "protect";
    }
    return "unknown";
}

Mechanism side_mechanism(Mechanism mechanism, Side side) {
    if (mechanism != Mechanism::run && mechanism != Mechanism::protect) return mechanism;
    return side == Side::server ? Mechanism::keepalive_user_timeout : Mechanism::none;
}

std::string_view to_string(Side side) { return side == Side::server ? "server" : "client"; }

std::string_view to_string(WireKind kind) {
    switch (kind) {
        case WireKind::data:
            return "data";
        case WireKind::ack:
            return "ack";
        case WireKind::keepalive_probe:
            return "keepalive_probe";
        case WireKind::window_probe:
            return "window_probe";
        case WireKind::zero_window:
            return "zero_window";
        case WireKind::retransmission:
            return "retransmission";
        case WireKind::fin:
            return "fin";
        case WireKind::rst:
            return "rst";
    }
    return "unknown";
}

std::optional<Fault> parse_fault(std::string_view name) {
    for (Fault f : kAllFaults) {
        if (to_string(f) == name) return f;
    }
    return std::nullopt;
}

std::optional<Mechanism> parse_mechanism(std::string_view name) {
    for (Mechanism m : kAllMechanisms) {
        if (to_string(m) == name) return m;
    }
    return std::nullopt;
}

}  // namespace lifeline::lab
