#include "sim/simulation.hpp"

#include <algorithm>
#include <sstream>

#include "sim/simulation_internal.hpp"

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
        case PeerFate::impostor:
            return "impostor";
        case PeerFate::replaced:
            return "replaced";
        case PeerFate::returned:
            return "returned";
    }
    return "unknown";
}

namespace detail {

void Simulation::setup_connections() {
    const FaultProfile& f = config_.faults;
    const Duration horizon = config_.duration;
    for (std::uint32_t id = 0; id < config_.connections; ++id) {
        auto c = std::make_unique<Connection>();
        c->outcome.id = id;
        c->base_delay = uniform(config_.network.min_base_delay, config_.network.max_base_delay);
        c->server.timer.conn = id;
        c->client.timer.conn = id;
        c->client_config = client_config_;
        c->client_config.id = client_id(id);
        // Clients connect over the first interval, so heartbeats are spread out.
        const Instant start = kEpoch + uniform(Duration::zero(), config_.interval);
        const double roll = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
        // Faults strike after the connection has settled and early enough to be judged.
        const Instant fault_at = start + uniform(config_.interval * 2, horizon / 2);
        const double takeover_from = f.crash_fraction + f.freeze_fraction + f.busy_fraction;
        // An impostor arrives once its victims have settled.
        push(roll >= takeover_from && roll < takeover_from + f.impostor_fraction ? fault_at : start,
             EventKind::client_start, id);
        if (roll >= takeover_from && roll < takeover_from + f.impostor_fraction) {
            c->outcome.fate = PeerFate::impostor;
        } else if (roll >= takeover_from && roll < takeover_from + f.impostor_fraction + f.returning_fraction) {
            c->outcome.fate = PeerFate::replaced;  // Its path drops like a crash; add_comeback() brings it back.
            c->outcome.fault_at = fault_at;
            push(fault_at, EventKind::crash, id);
        } else if (roll < f.crash_fraction) {
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
    add_takeover_connections();
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
            prepare_client(c);
            c.client.session = std::make_unique<ClientSession>(c.client_config, now);
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
    // Until it has nothing more: admitting a HELLO (an event) writes the WELCOME.
    for (bool more = true; more;) {
        more = false;
        while (auto t = s.poll_transmit()) send(c, false, t->bytes, now);
        while (auto e = s.poll_event()) {
            more = true;
            if (e->kind == SessionEventKind::error) violation(c, "server: " + e->message);
            if (e->kind == SessionEventKind::hello) admit(c, *e, now);
            if (e->kind == SessionEventKind::dead) on_server_dead(c, *e, now);
            if (e->kind == SessionEventKind::closed && !c.outcome.server_reason) {
                c.outcome.server_reason = e->reason;
                c.server.open = false;
                end_session(c, e->reason, now);
            }
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
        if (e->kind == SessionEventKind::opened) c.outcome.opened = true;
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
    if ((c.outcome.fate == PeerFate::healthy || c.outcome.fate == PeerFate::busy ||
         c.outcome.fate == PeerFate::returned) &&
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
    presence_checks();
    for (auto& c : conns_) {
        takeover_checks(*c);
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

}  // namespace detail

SimulationReport run_simulation(const SimulationConfig& config) { return detail::Simulation(config).run(); }

}  // namespace lifeline::sim
