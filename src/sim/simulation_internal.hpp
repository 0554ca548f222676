// Internal to src/sim: the simulation's types and its driver class, shared by
// simulation.cpp (network, faults, liveness checks) and takeover.cpp (ids,
// admission and takeover by resume token, and their checks).
#pragma once

#include <array>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/session_directory.hpp"
#include "lifeline/engine/timing_wheel.hpp"
#include "sim/simulation.hpp"

namespace lifeline::sim::detail {

inline const Instant kEpoch = Instant::from_ns(0);

enum class EventKind : std::uint8_t { client_start, to_server, to_client, crash, freeze, thaw, busy_send };

struct Event {
    Instant at;
    std::uint64_t seq;  // Tie-breaker: equal times run in scheduling order.
    EventKind kind;
    std::uint32_t conn;
    std::vector<std::uint8_t> bytes;

    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

// A TimerNode that knows which connection and side it times.
struct SimTimer : TimerNode {
    std::uint32_t conn = 0;
};

// One side: the public engine's session (the very object the runtime and
// users' own loops drive), its timer, and the link towards the other side.
template <class Session>
struct Endpoint {
    std::unique_ptr<Session> session;
    SimTimer timer;
    bool open = false;
    Instant free_at;  // The in-order delivery time of the last bytes sent this way.
};

struct Connection {
    ConnectionOutcome outcome;
    Duration base_delay;
    Endpoint<ServerSession> server;
    Endpoint<ClientSession> client;
    ClientSessionConfig client_config;  // Its own: the id (and a comeback's token) differ per client.
    Instant frozen_until;               // Client process stopped until then.
    bool crashed = false;
    std::vector<std::vector<std::uint8_t>> held_while_frozen;
    bool id_pinned = false;  // The server session refers to the directory's stored id (admitted with one).
};

class Simulation {
public:
    explicit Simulation(const SimulationConfig& config)
        : config_(config),
          server_config_(server_config(config)),
          client_config_(client_config(config)),
          rng_(config.seed),
          server_wheel_(kEpoch, {config.tick}),
          client_wheel_(kEpoch, {config.tick}),
          directory_(directory_config(config)) {}

    ~Simulation() {
        for (auto& c : conns_) {
            server_wheel_.cancel(c->server.timer);
            client_wheel_.cancel(c->client.timer);
        }
    }

    SimulationReport run();

private:
    Duration uniform(Duration lo, Duration hi) {
        if (hi <= lo) return lo;
        std::uniform_int_distribution<std::int64_t> d(lo.ns(), hi.ns());
        return Duration::nanoseconds(d(rng_));
    }
    bool chance(double p) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p; }

    void push(Instant at, EventKind kind, std::uint32_t conn, std::vector<std::uint8_t> bytes = {}) {
        events_.push(Event{at, next_seq_++, kind, conn, std::move(bytes)});
    }
    // The server grants what the simulated clients ask; `server_timeout_error`
    // reaches the server as a different requested timeout (the client judges
    // by it too), while the checks judge against `timeout`.
    static ServerSessionConfig server_config(const SimulationConfig& c) {
        ServerSessionConfig s;
        s.heartbeat = c.interval;
        s.timeout = c.timeout;
        s.min_interval = std::min(c.interval, Duration::milliseconds(100));
        s.max_timeout = Duration::hours(1);
        s.handshake_timeout = c.duration;
        s.admission = true;  // Every HELLO goes through admit(): the takeover rule.
        return s;
    }
    // The server's SessionDirectory with the server's defaults (presence kept
    // for 24 h). The key comes from the seed (a run replays) but not from
    // rng_, which makes the impostors' guesses: to them the tokens are as
    // unguessable as the server's.
    static SessionDirectoryConfig directory_config(const SimulationConfig& c) {
        SessionDirectoryConfig d;
        std::mt19937_64 key_rng(c.seed ^ 0x6b6579u);
        for (std::uint8_t& b : d.token_key) b = static_cast<std::uint8_t>(key_rng());
        return d;
    }
    static ClientSessionConfig client_config(const SimulationConfig& c) {
        ClientSessionConfig s;
        s.heartbeat = c.interval;
        s.timeout = c.timeout + c.server_timeout_error;
        s.handshake_timeout = c.duration;
        return s;
    }

    void setup_connections();
    void send(Connection& c, bool from_client, std::span<const std::uint8_t> wire, Instant now);
    void on_event(Event& e);
    void server_receive(Connection& c, const std::vector<std::uint8_t>& bytes, Instant now);
    void client_receive(Connection& c, const std::vector<std::uint8_t>& bytes, Instant now);
    void on_server_timer(Connection& c, Instant now);
    void on_client_timer(Connection& c, Instant now);
    // After any input to a session: send what it wrote, handle its events, re-arm its timer.
    void after_server(Connection& c, Instant now);
    void after_client(Connection& c, Instant now);
    void on_server_dead(Connection& c, const SessionEvent& e, Instant now);
    // Takeover (takeover.cpp): ids, admission by resume token, and its checks.
    static std::string client_id(std::uint32_t conn) { return "device-" + std::to_string(conn); }
    void add_takeover_connections();
    void claim_a_live_id(Connection& impostor);
    void add_comeback(const Connection& replaced);
    void prepare_client(Connection& c);
    void admit(Connection& c, const SessionEvent& hello, Instant now);
    void end_session(Connection& c, DisconnectReason reason, Instant now);
    void offline_check(const Connection& c, DisconnectReason reason, const PresenceOffline& o);
    void takeover_checks(const Connection& c);
    void presence_checks();
    ResumeToken random_token();
    void violation(const Connection& c, const std::string& what);
    void trace(Instant now, const Connection& c, const std::string& what);
    void final_checks(Instant end);

    SimulationConfig config_;
    ServerSessionConfig server_config_;
    ClientSessionConfig client_config_;
    std::mt19937_64 rng_;
    TimingWheel server_wheel_;
    TimingWheel client_wheel_;
    // Client id -> the connection holding it (its index as the holder's slot
    // and conn), and presence. Before conns_: sessions refer to its stored ids.
    SessionDirectory directory_;
    std::vector<std::unique_ptr<Connection>> conns_;
    std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
    std::uint64_t next_seq_ = 0;
    SimulationReport report_;
};

}  // namespace lifeline::sim::detail
