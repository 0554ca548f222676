#include "sim/simulation.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <deque>
#include <memory>
#include <queue>
#include <random>
#include <sstream>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/timing_wheel.hpp"

namespace lifeline::sim {

std::string_view to_string(PeerFate fate) {
    switch (fate) {
        case PeerFate::healthy:
            return "healthy";
        case PeerFate::busy:
            return "busy";
        case PeerFate::frozen:
            return "frozen";
        case PeerFate::crashed:
            return "crashed";
    }
    return "unknown";
}

namespace {

const Instant kEpoch = Instant::from_ns(0);

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
    Instant frozen_until;  // Client process stopped until then.
    bool crashed = false;
    std::vector<std::vector<std::uint8_t>> held_while_frozen;
};

class Simulation {
public:
    explicit Simulation(const SimulationConfig& config)
        : config_(config),
          server_config_(server_config(config)),
          client_config_(client_config(config)),
          rng_(config.seed),
          server_wheel_(kEpoch, {config.tick}),
          client_wheel_(kEpoch, {config.tick}) {}

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
        return s;
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
    void violation(const Connection& c, const std::string& what);
    void trace(Instant now, const Connection& c, const std::string& what);
    void final_checks(Instant end);

    SimulationConfig config_;
    ServerSessionConfig server_config_;
    ClientSessionConfig client_config_;
    std::mt19937_64 rng_;
    TimingWheel server_wheel_;
    TimingWheel client_wheel_;
    std::vector<std::unique_ptr<Connection>> conns_;
    std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
    std::uint64_t next_seq_ = 0;
    SimulationReport report_;
};

void Simulation::setup_connections() {
    const FaultProfile& f = config_.faults;
    const Duration horizon = config_.duration;
    for (std::uint32_t id = 0; id < config_.connections; ++id) {
        auto c = std::make_unique<Connection>();
        c->outcome.id = id;
        c->base_delay = uniform(config_.network.min_base_delay, config_.network.max_base_delay);
        c->server.timer.conn = id;
        c->client.timer.conn = id;
        // Clients connect over the first interval, so heartbeats are spread out.
        const Instant start = kEpoch + uniform(Duration::zero(), config_.interval);
        push(start, EventKind::client_start, id);
        const double roll = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
        // Faults strike after the connection has settled and early enough to be judged.
        const Instant fault_at = start + uniform(config_.interval * 2, horizon / 2);
        if (roll < f.crash_fraction) {
            c->outcome.fate = PeerFate::crashed;
            c->outcome.fault_at = fault_at;
            push(fault_at, EventKind::crash, id);
        } else if (roll < f.crash_fraction + f.freeze_fraction) {
            c->outcome.fate = PeerFate::frozen;
            c->outcome.fault_at = fault_at;
            c->outcome.freeze_for = uniform(f.min_freeze, f.max_freeze);
            push(fault_at, EventKind::freeze, id);
        } else if (roll < f.crash_fraction + f.freeze_fraction + f.busy_fraction) {
            c->outcome.fate = PeerFate::busy;
            push(start + f.busy_period, EventKind::busy_send, id);
        }
        conns_.push_back(std::move(c));
    }
}

// Splits `wire` into 1-3 segments and schedules their in-order delivery
// after the link's delay, jitter and any retransmissions.
void Simulation::send(Connection& c, bool from_client, std::span<const std::uint8_t> wire, Instant now) {
    ++report_.frames;
    if (from_client) {
        c.client.session->on_sent(now);
    } else {
        c.server.session->on_sent(now);
    }
    Instant& free_at = from_client ? c.client.free_at : c.server.free_at;
    const NetworkProfile& n = config_.network;
    const std::size_t segments = std::min<std::size_t>(wire.size(), 1 + rng_() % 3);
    std::size_t offset = 0;
    for (std::size_t s = 0; s < segments; ++s) {
        const std::size_t len =
            s + 1 == segments ? wire.size() - offset : 1 + rng_() % (wire.size() - offset - (segments - s - 1));
        Duration delay = c.base_delay + uniform(Duration::zero(), n.jitter);
        for (int loss = 0; loss < n.max_losses_per_frame && chance(n.loss); ++loss) delay += n.retransmit_delay;
        // TCP delivers in order: a segment never overtakes the one before it.
        const Instant at = std::max(now + delay, free_at);
        free_at = at;
        push(at, from_client ? EventKind::to_server : EventKind::to_client, c.outcome.id,
             std::vector<std::uint8_t>(wire.begin() + static_cast<std::ptrdiff_t>(offset),
                                       wire.begin() + static_cast<std::ptrdiff_t>(offset + len)));
        offset += len;
    }
}

void Simulation::on_event(Event& e) {
    Connection& c = *conns_[e.conn];
    const Instant now = e.at;
    switch (e.kind) {
        case EventKind::client_start:
            c.client.session = std::make_unique<ClientSession>(client_config_, now);
            c.client.open = true;
            c.client.free_at = now;
            after_client(c, now);
            break;
        case EventKind::to_server:
            server_receive(c, e.bytes, now);
            break;
        case EventKind::to_client:
            if (c.crashed || !c.client.open) break;
            if (now < c.frozen_until) {
                c.held_while_frozen.push_back(std::move(e.bytes));  // The kernel buffers; nobody reads.
            } else {
                client_receive(c, e.bytes, now);
            }
            break;
        case EventKind::crash:
            c.crashed = true;
            client_wheel_.cancel(c.client.timer);
            trace(now, c, "client host vanished (no FIN, no RST)");
            break;
        case EventKind::freeze:
            c.frozen_until = now + c.outcome.freeze_for;
            push(c.frozen_until, EventKind::thaw, e.conn);
            trace(now, c, "client process frozen for " + to_string(c.outcome.freeze_for));
            break;
        case EventKind::thaw: {
            trace(now, c, "client process resumed");
            if (!c.client.open) break;
            // The runtime's stall guard: our own stop is not the server's fault.
            c.client.session->on_local_stall(now);
            after_client(c, now);
            auto held = std::move(c.held_while_frozen);
            c.held_while_frozen.clear();
            for (const auto& bytes : held) {
                if (!c.client.open) break;
                client_receive(c, bytes, now);
            }
            break;
        }
        case EventKind::busy_send:
            if (c.crashed || !c.client.open) break;
            if (now < c.frozen_until) {
                push(c.frozen_until, EventKind::busy_send, e.conn);
                break;
            }
            {
                static const std::array<std::uint8_t, 64> payload{};
                if (c.client.session->send(payload)) after_client(c, now);
            }
            push(now + config_.faults.busy_period, EventKind::busy_send, e.conn);
            break;
    }
}

void Simulation::server_receive(Connection& c, const std::vector<std::uint8_t>& bytes, Instant now) {
    if (!c.server.session) {  // accept(): the first segment of the HELLO.
        c.server.session = std::make_unique<ServerSession>(server_config_, c.outcome.id, now);
        c.server.open = true;
        c.server.free_at = now;
        c.outcome.last_arrival = now;
    }
    if (!c.server.open) return;
    const Duration gap = now - c.outcome.last_arrival;
    c.outcome.longest_silence = std::max(c.outcome.longest_silence, gap);
    if (gap > config_.timeout + config_.tick) {
        violation(c, "missed: " + to_string(gap) + " of silence passed without the server declaring the peer dead");
    }
    c.outcome.last_arrival = now;
    c.server.session->receive(bytes, now);
    after_server(c, now);
}

void Simulation::client_receive(Connection& c, const std::vector<std::uint8_t>& bytes, Instant now) {
    c.client.session->receive(bytes, now);
    after_client(c, now);
}

void Simulation::on_server_timer(Connection& c, Instant now) {
    if (!c.server.open) return;
    c.server.session->handle_timeout(now);
    after_server(c, now);
}

void Simulation::on_client_timer(Connection& c, Instant now) {
    if (!c.client.open || c.crashed) return;
    if (now < c.frozen_until) {  // A stopped process runs no timers.
        client_wheel_.schedule(c.client.timer, c.frozen_until);
        return;
    }
    c.client.session->handle_timeout(now);
    after_client(c, now);
}

void Simulation::after_server(Connection& c, Instant now) {
    ServerSession& s = *c.server.session;
    while (auto t = s.poll_transmit()) send(c, false, t->bytes, now);
    while (auto e = s.poll_event()) {
        if (e->kind == SessionEventKind::error) violation(c, "server: " + e->message);
        if (e->kind == SessionEventKind::dead) on_server_dead(c, *e, now);
        if (e->kind == SessionEventKind::closed && !c.outcome.server_reason) {
            c.outcome.server_reason = e->reason;
            c.server.open = false;
        }
    }
    if (c.server.open) {
        server_wheel_.schedule(c.server.timer, s.next_timeout());
    } else {
        server_wheel_.cancel(c.server.timer);
    }
}

void Simulation::after_client(Connection& c, Instant now) {
    ClientSession& s = *c.client.session;
    while (auto t = s.poll_transmit()) send(c, true, t->bytes, now);
    while (auto e = s.poll_event()) {
        if (e->kind == SessionEventKind::dead && c.server.open) violation(c, "client convicted the healthy server");
        if (e->kind == SessionEventKind::closed && !c.outcome.client_reason) {
            if (e->reason == DisconnectReason::protocol_error) violation(c, "client: " + e->message);
            c.outcome.client_reason = e->reason;
            c.client.open = false;
        }
    }
    if (c.client.open) {
        client_wheel_.schedule(c.client.timer, s.next_timeout());
    } else {
        client_wheel_.cancel(c.client.timer);
    }
}

void Simulation::on_server_dead(Connection& c, const SessionEvent& e, Instant now) {
    const Duration silence = now - c.outcome.last_arrival;
    c.outcome.longest_silence = std::max(c.outcome.longest_silence, silence);
    if (silence < config_.timeout) {
        violation(c, "early: declared dead after only " + to_string(silence) + " of silence");
    }
    if (silence > config_.timeout + config_.tick) {
        violation(c, "late: declared dead after " + to_string(silence) + " of silence");
    }
    if ((c.outcome.fate == PeerFate::healthy || c.outcome.fate == PeerFate::busy) &&
        c.outcome.longest_silence < config_.timeout) {
        violation(c, "false positive: a live peer within tolerance was declared dead");
    }
    c.outcome.server_declared_at = now;
    trace(now, c,
          "server declared the client dead (" + std::string(lifeline::to_string(e.reason)) + ") after " +
              to_string(silence) + " of silence");
}

void Simulation::violation(const Connection& c, const std::string& what) {
    std::ostringstream out;
    out << "seed=" << config_.seed << " conn=" << c.outcome.id << " (" << to_string(c.outcome.fate) << "): " << what
        << " [replay: seed=" << config_.seed << "]";
    report_.violations.push_back(out.str());
}

void Simulation::trace(Instant now, const Connection& c, const std::string& what) {
    if (!config_.trace) return;
    config_.trace("t=" + to_string(now - kEpoch) + " conn " + std::to_string(c.outcome.id) + ": " + what);
}

void Simulation::final_checks(Instant end) {
    for (auto& c : conns_) {
        if (c->client.session) c->outcome.rtt_smoothed = c->client.session->liveness().rtt().smoothed();
        if (!c->server.open) continue;
        const Duration silence = end - c->outcome.last_arrival;
        c->outcome.longest_silence = std::max(c->outcome.longest_silence, silence);
        if (silence > config_.timeout + config_.tick) {
            violation(*c, "never declared dead after " + to_string(silence) + " of silence");
        }
    }
}

SimulationReport Simulation::run() {
    report_.seed = config_.seed;
    setup_connections();
    const Instant end = kEpoch + config_.duration;
    while (true) {
        const Instant next_event = events_.empty() ? Instant::never() : events_.top().at;
        const Instant next_server = server_wheel_.next_expiry();
        const Instant next_client = client_wheel_.next_expiry();
        const Instant now = earliest(next_event, earliest(next_server, next_client));
        if (now > end) break;
        if (++report_.events > config_.max_events) {
            report_.hit_event_limit = true;
            report_.violations.push_back("seed=" + std::to_string(config_.seed) + ": event limit reached");
            break;
        }
        // Sockets are read before timers run, as an event loop does.
        if (next_event <= next_server && next_event <= next_client) {
            // Moving out of top() is safe: pop() only compares `at` and `seq`.
            Event e = std::move(const_cast<Event&>(events_.top()));
            events_.pop();
            on_event(e);
        } else if (next_server <= next_client) {
            server_wheel_.advance(now,
                                  [&](TimerNode& n) { on_server_timer(*conns_[static_cast<SimTimer&>(n).conn], now); });
        } else {
            client_wheel_.advance(now,
                                  [&](TimerNode& n) { on_client_timer(*conns_[static_cast<SimTimer&>(n).conn], now); });
        }
    }
    final_checks(end);
    for (auto& c : conns_) report_.connections.push_back(c->outcome);
    return std::move(report_);
}

}  // namespace

SimulationReport run_simulation(const SimulationConfig& config) { return Simulation(config).run(); }

}  // namespace lifeline::sim
