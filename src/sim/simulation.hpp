// A deterministic simulation of one server and many clients over a seeded,
// imperfect network, driving the real core: the TimingWheel, the
// LivenessMachine with a FixedTimeoutDetector, and the wire codec (every frame
// is encoded, split into segments at random, and decoded incrementally).
//
// The network delivers each direction of a connection in order (it models TCP
// above the kernel): per frame, a connection's base delay plus uniform jitter,
// plus a retransmission delay for each simulated segment loss. Peers fail in
// the ways the mission names: a `crash` is a host that vanishes silently (no
// FIN, no RST), a `freeze` is a process stopped for a while (its kernel keeps
// buffering), and some peers are `busy` (they stream DATA, so they never need
// to PING while they talk).
//
// The simulator checks, against its own ground truth of when bytes arrived:
//  - completeness: a connection whose peer stays silent is declared dead no
//    later than `timeout + 1 tick` after the last frame arrived;
//  - accuracy: nobody is declared dead before `timeout` of real silence, so a
//    live peer whose delays stay within the tolerance is never convicted; and
//    a client never convicts the (always healthy) server;
//  - takeover (docs/PROTOCOL.md): an `impostor` that claims a live peer's id
//    without its resume token is refused (CLOSE id_in_use) and the holder is
//    untouched; a client whose path dropped silently (`replaced`) and that
//    comes back on a new connection with its token (`returned`) is admitted,
//    and its old connection ends with session_replaced; nothing else ever does.
// Every violation message carries the seed, so a failure replays exactly.
// The run is bounded in simulated time and in events.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/time.hpp"

namespace lifeline::sim {

struct NetworkProfile {
    Duration min_base_delay = Duration::milliseconds(1);  // One-way, per connection, uniform in [min, max].
    Duration max_base_delay = Duration::milliseconds(40);
    Duration jitter = Duration::milliseconds(30);  // Extra per frame, uniform in [0, jitter].
    double loss = 0.01;                            // Per segment; each loss costs a retransmission.
    Duration retransmit_delay = Duration::milliseconds(200);
    int max_losses_per_frame = 3;
};

struct FaultProfile {
    double crash_fraction = 0.05;   // Hosts that vanish silently at a random time.
    double freeze_fraction = 0.05;  // Processes stopped for a while, then resumed.
    double busy_fraction = 0.10;    // Peers that stream DATA every busy_period.
    // Connections that claim a healthy peer's id without its token (half of
    // them present a wrong one).
    double impostor_fraction = 0.01;
    // Clients whose path drops silently and that come back at once on a new
    // connection (an extra one) with their resume token.
    double returning_fraction = 0.01;
    Duration min_freeze = Duration::milliseconds(500);
    Duration max_freeze = Duration::seconds(8);
    Duration busy_period = Duration::milliseconds(200);
};

struct SimulationConfig {
    std::uint64_t seed = 1;
    std::uint32_t connections = 10'000;
    Duration duration = Duration::seconds(60);  // Simulated time.
    Duration interval = Duration::seconds(1);   // Client heartbeat interval.
    Duration timeout = Duration::seconds(3);    // Both sides' heartbeat timeout.
    Duration tick = Duration::milliseconds(10);
    NetworkProfile network;
    FaultProfile faults;
    std::uint64_t max_events = 50'000'000;
    // Added to the timeout the server really runs with, while the checks judge
    // against `timeout`. Zero in real use; tests set it to prove the checks fire.
    Duration server_timeout_error = Duration::zero();
    // The server admits every claim on an id, token or not. Tests set it to
    // prove the takeover checks fire.
    bool admit_every_claim = false;
    // Called for notable events (fault injected, peer declared dead), for demos.
    std::function<void(const std::string&)> trace;
};

enum class PeerFate : std::uint8_t { healthy, busy, frozen, crashed, impostor, replaced, returned };
std::string_view to_string(PeerFate fate);

struct ConnectionOutcome {
    std::uint32_t id = 0;
    PeerFate fate = PeerFate::healthy;
    Instant fault_at;            // crash or freeze start (unset for healthy/busy)
    Duration freeze_for;         // for frozen peers
    Instant last_arrival;        // last byte from the client at the server (ground truth)
    Instant server_declared_at;  // unset if the server never declared the client dead
    std::optional<DisconnectReason> server_reason;
    // impostor: the connection whose id it claims; returned: the one it replaces.
    std::optional<std::uint32_t> claims;
    bool claim_met_holder = false;  // Its HELLO claimed an id that an open connection held.
    bool opened = false;            // The client got its WELCOME.
    std::optional<DisconnectReason> client_reason;
    Duration longest_silence;  // longest gap between arrivals at the server while open
    Duration rtt_smoothed;     // the client's estimate
};

struct SimulationReport {
    std::uint64_t seed = 0;
    std::vector<ConnectionOutcome> connections;
    std::vector<std::string> violations;  // Empty when every check held.
    std::uint64_t events = 0;
    std::uint64_t frames = 0;
    bool hit_event_limit = false;
};

// Runs the simulation. Deterministic for a given config (same seed, same report).
SimulationReport run_simulation(const SimulationConfig& config);

}  // namespace lifeline::sim
