// Internal: what one run of the network lab measured. The lab fills it; the
// report (table, JSON, HTML) only reads it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/time.hpp"

namespace lifeline::lab {

// The faults the lab injects, each on its own client host.
enum class Fault : unsigned char {
    cable_pull,     // The client's switch port goes down: silence both ways, no RST, no ICMP.
    blackhole_out,  // Packets from the client are dropped in the switch.
    blackhole_in,   // Packets to the client are dropped in the switch.
    freeze,         // The client process is SIGSTOPped; its kernel still answers.
    crash,          // The client process is SIGKILLed; its kernel closes the socket.
    host_reboot,    // Cable pulled, the client host wiped, cable back: the next packet meets a RST.
    transfer_cut,   // The server streams to the client when the cable is pulled (unacknowledged data).
    stuck_reader,   // The client stops reading while the server keeps sending (zero window).
    server_stall,   // The server process is stopped for twice its heartbeat timeout, then resumed.
    nat_expiry,     // A NAT in the switch forgets flows idle for LabConfig::nat_timeout; then the client sends.
    server_reboot,  // The server host (a host of its own) loses all state and comes back: RST for the client.
};

inline constexpr Fault kAllFaults[] = {Fault::cable_pull,   Fault::blackhole_out, Fault::blackhole_in,
                                       Fault::freeze,       Fault::crash,         Fault::host_reboot,
                                       Fault::transfer_cut, Fault::stuck_reader,  Fault::server_stall,
                                       Fault::nat_expiry,   Fault::server_reboot};

enum class Side : unsigned char { server, client };

// The detection mechanisms each fault is run against.
enum class Mechanism : unsigned char {
    none,                    // Default sockets, raw mode: shows the problem.
    keepalive,               // SO_KEEPALIVE with idle/interval/count, no user timeout.
    keepalive_user_timeout,  // Keepalive plus TCP_USER_TIMEOUT.
    heartbeat,               // The framed protocol's heartbeats only (no kernel options).
    websocket,               // WebSocket (`serve --mode websocket`, `connect ws://`): ping frames
                             // both ways, no kernel options.
    all,                     // Heartbeats, keepalive and user timeout together.
    // A server that sets no socket option itself (`serve --keepalive system`,
    // standing for a program nobody rewrote), given keepalive + user timeout
    // from outside; the client has none. run: started under `lifeline run`
    // (the preload library); protect: `lifeline protect --pid` once connected.
    run,
    protect,
};

inline constexpr Mechanism kAllMechanisms[] = {
    Mechanism::none,      Mechanism::keepalive, Mechanism::keepalive_user_timeout,
    Mechanism::heartbeat, Mechanism::websocket, Mechanism::all,
    Mechanism::run,       Mechanism::protect};

// Application heartbeats (framed or WebSocket) on both sides.
inline bool has_heartbeats(Mechanism m) {
    return m == Mechanism::heartbeat || m == Mechanism::websocket || m == Mechanism::all;
}

// What one side of a cell runs: run and protect give the server keepalive +
// user timeout and the client nothing; the others are the same on both sides.
Mechanism side_mechanism(Mechanism mechanism, Side side);

std::string_view to_string(Fault fault);          // "cable_pull"
std::string_view to_string(Mechanism mechanism);  // "keepalive+user_timeout"
std::string_view to_string(Side side);            // "server"
std::optional<Fault> parse_fault(std::string_view name);
std::optional<Mechanism> parse_mechanism(std::string_view name);
// One line for people: what the fault does.
std::string_view describe(Fault fault);

// How one side's end of the cell's connection ended, if it did within the lab's limit.
struct SideOutcome {
    bool detected = false;
    std::optional<DisconnectReason> reason;  // Set when detected.
    Duration latency;                        // From fault injection to the closing event.
    std::string message;                     // The event's message, if any.
};

// What a packet seen on the switch was, as far as liveness goes.
enum class WireKind : unsigned char {
    data,             // Carries payload.
    ack,              // Pure ACK.
    keepalive_probe,  // Zero-length segment with seq = snd.nxt - 1 (RFC 1122 4.2.3.6).
    window_probe,     // Probe of a zero window (or a payload segment while the window is zero).
    zero_window,      // An ACK advertising a zero window.
    retransmission,   // Payload at a sequence already sent.
    fin,
    rst,
};

std::string_view to_string(WireKind kind);

// One packet, as it entered the switch from its sender.
struct WirePacket {
    Duration at;  // Relative to fault injection (negative: before the fault).
    Side from;
    WireKind kind;
    std::uint32_t payload_bytes = 0;
};

struct CellResult {
    Fault fault;
    Mechanism mechanism;
    SideOutcome server;
    SideOutcome client;
    // What the mechanism promised for this fault: the detection budget of the
    // fastest mechanism that should catch it, or nullopt if none should.
    std::optional<Duration> budget;
    Duration tolerance;  // Allowed lateness beyond the budget.
    // Relative to the fault (<= 0): the last payload or heartbeat the server
    // got; unset when none was seen (raw clients send nothing, or no capture).
    std::optional<Duration> last_byte_from_client;
    // Application bytes handed over after the fault that never reached the
    // peer's application (both directions; a sender that was told stops
    // counting then). Unset when the cell carries no application data, so
    // there is nothing to lose, or when a side could not report its count.
    std::optional<std::uint64_t> lost_bytes;
    std::vector<WirePacket> wire;       // Probes, RSTs, FINs and a sample of data/acks around the fault.
    bool as_expected = true;            // Every expectation held.
    std::vector<std::string> findings;  // Why not, for people ("server: wrong reason peer_closed, expected ...").
};

// The knobs one run used, for the report's header.
struct LabConfig {
    Duration keepalive_idle = Duration::seconds(1);
    Duration keepalive_interval = Duration::seconds(1);
    int keepalive_count = 3;
    Duration user_timeout = Duration::seconds(4);
    Duration heartbeat_interval = Duration::milliseconds(250);
    Duration heartbeat_timeout = Duration::seconds(1);
    Duration limit = Duration::seconds(12);  // How long the lab watches after the fault.
    Duration settle = Duration::seconds(2);  // Healthy traffic before the fault.
    // nat_expiry: the NAT forgets a flow idle this long. Longer than every
    // mechanism's quiet gap by default (heartbeat 250 ms, keepalive idle 1 s),
    // so those flows survive and only `none` loses its messages.
    Duration nat_timeout = Duration::seconds(2);
    bool ipv6 = false;  // Hosts on 2001:2::/64 (RFC 5180) instead of 198.18.0.0/24 (RFC 2544).
};

struct LabRun {
    LabConfig config;
    std::string kernel;      // uname -r
    std::string started_at;  // ISO 8601 UTC
    Duration elapsed;        // Whole run, setup and teardown included.
    bool captured = false;   // Whether wire evidence was captured.
    std::vector<CellResult> cells;
};

}  // namespace lifeline::lab
