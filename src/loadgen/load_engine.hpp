// Internal: the load generator behind `lifeline bench`. One engine drives a
// share of the connections on one thread; a bench process runs one engine per
// thread, and `lifeline bench` runs several processes when the connections
// pass one process's descriptor limit.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lifeline/result.hpp"
#include "lifeline/time.hpp"
#include "loadgen/latency_histogram.hpp"

namespace lifeline::loadgen {

enum class Protocol : unsigned char {
    framed,     // lifeline's protocol, driven by the real lifeline::Client.
    websocket,  // RFC 6455 to `serve --mode websocket`: the real lifeline::Client's WebSocket mode.
    echo,       // 8-byte PING, 8-byte echo: for a timer-less echo server (the floor) and Asio.
    mqtt,       // MQTT 3.1.1 CONNECT with keep-alive, then PINGREQ/PINGRESP: for mosquitto.
};

// When each connection's heartbeats go out.
enum class Arrivals : unsigned char {
    // Like real devices: each connection starts at an independent, uniformly
    // random phase within the heartbeat interval (seeded), then pings every
    // interval, each ping its own send() at its own instant. The generator's
    // loop ticks every kUniformTick, so two pings share a loop turn only when
    // their instants fall in the same kUniformTick.
    uniform,
    // The generator's historical pattern: connections start in ramp order and
    // ping on the loop's 10 ms ticks, so every ping due within a tick leaves
    // in one burst (the server then reads many per wake-up).
    burst,
};

// The generator loop's timer resolution under Arrivals::uniform. At 19,000
// pings a second (one every 53 us on average) a 25 us tick puts two pings in
// one turn only about as often as independent arrivals would fall that close.
inline constexpr Duration kUniformTick = Duration::microseconds(25);

// What each connection's first ping waits for beyond its ramp slot: uniform
// in [0, heartbeat) from `rng_state` (a splitmix64 state, advanced), or 0 for
// burst. Deterministic for a given seed.
Duration start_jitter(Arrivals arrivals, Duration heartbeat, std::uint64_t& rng_state);

// The client id prefix of the engine seeded `seed`, "device-<16 hex digits>"
// (23 bytes); lifeline::Client appends "-<index>", so a connection sends 25
// to 29 bytes in HELLO (framed) or the query (websocket) at up to 20,000
// connections per engine. Unique across engines with distinct seeds: the hex
// is a bijection of the seed.
std::string client_id_base(std::uint64_t seed);

struct LoadOptions {
    std::string server = "127.0.0.1:8888";  // IPv4 "a.b.c.d:port"
    Protocol protocol = Protocol::framed;
    int connections = 1000;                     // This engine's share.
    std::vector<std::string> sources;           // Bind-before-connect source addresses, used round robin ("" = any).
    double ramp_per_second = 5000;              // New connections per second for this engine.
    Duration heartbeat = Duration::seconds(1);  // PING / PINGREQ interval.
    Duration timeout = Duration::seconds(3);    // framed: requested timeout; mqtt: keep-alive = heartbeat.
    std::uint64_t seed = 1;
    Arrivals arrivals = Arrivals::uniform;
    // framed and websocket: send a client id (client_id_base(seed) + "-<index>"); false = the server assigns one.
    bool send_id = true;
    // framed only: come back after the server closes a connection, with the
    // client's full-jitter backoff (the reconnect storm).
    bool reconnect = false;
    // framed and websocket: over TLS, trusting the certificate in tls_ca (PEM).
    bool tls = false;
    std::string tls_ca;
};

// Wall-clock-free: times are monotonic nanoseconds (CLOCK_MONOTONIC), comparable across threads and processes.
struct LoadStats {
    std::uint64_t connected = 0;         // Connections that completed their handshake.
    std::uint64_t connect_failures = 0;  // Attempts that failed (refused, timed out, EADDRNOTAVAIL...).
    std::uint64_t open = 0;              // Open right now.
    std::uint64_t round_trips = 0;       // PONG / echo / PINGRESP received.
    std::uint64_t silenced = 0;          // Connections told to go silent.
    std::uint64_t false_closes = 0;      // Connections NOT silenced that the server closed (false positives).
    // For each silenced connection the server closed: close seen - silence instant,
    // and close seen - the last byte this connection sent before going silent.
    std::vector<std::int64_t> detect_after_silence_ns;
    std::vector<std::int64_t> detect_after_last_send_ns;
    std::string first_error;  // The first connect error, for people ("connect 127.0.0.5: EADDRNOTAVAIL").
    // With reconnect: each connection's first loss is the storm (`drops`);
    // a loss after it came back is a false death (counted in false_closes).
    std::uint64_t drops = 0;
    std::uint64_t reconnected = 0;       // Connections that came back after their drop.
    std::int64_t first_drop_ns = 0;      // CLOCK_MONOTONIC; 0 = none.
    std::int64_t last_reconnect_ns = 0;  // When the latest of them came back.
    // Every heartbeat round trip: the ping's send (the loop turn that wrote it)
    // to its echo, PONG or PINGRESP (the loop turn that read it).
    LatencyHistogram round_trip_latency;
};

class LoadEngine {
public:
    virtual ~LoadEngine() = default;
    // Runs on the calling thread until stop(): ramps up to the connection
    // count, keeps each connection pinging every heartbeat, records closes.
    virtual void run() = 0;
    // Thread-safe.
    virtual void stop() = 0;
    // Thread-safe: the connections chosen by is_silenced(i, fraction) stop
    // sending anything (no PINGs) but keep reading, so they see the server
    // close them. Uses the moment of the call as the silence instant.
    virtual void silence(double fraction) = 0;
    // Thread-safe snapshot.
    virtual LoadStats stats() const = 0;
};

// Whether connection `index` is among `fraction` of them: exactly
// round(fraction * n) of any first n, spread evenly.
inline bool is_silenced(std::uint64_t index, double fraction) {
    const auto before = static_cast<std::uint64_t>(static_cast<double>(index) * fraction);
    const auto after = static_cast<std::uint64_t>(static_cast<double>(index + 1) * fraction);
    return after > before;
}

// framed (lifeline::Client) or echo/mqtt (a lean epoll engine).
Result<std::unique_ptr<LoadEngine>> make_engine(const LoadOptions& options);

}  // namespace lifeline::loadgen
