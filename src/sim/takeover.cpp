// The simulation's takeover half: every client has an id, every HELLO goes
// through admit() with the engine's SessionDirectory, driven as lifeline's
// Server drives it (runtime/server_gateway_connection.cpp, on_hello, and
// server_connection.cpp, finish), and the checks that the rule held for
// impostors and for clients coming back with their resume token, and that
// presence was fenced by epoch.
#include <string>

#include "sim/simulation_internal.hpp"

namespace lifeline::sim::detail {

namespace {

std::string token_text(const ResumeToken& token) {
    return std::string(reinterpret_cast<const char*>(token.data()), token.size());
}

// The connection's index is its holder's slot and its connection number.
SessionHolder holder(const ConnectionOutcome& o) { return {0, o.id, o.id}; }

// Presence is in Unix ms; the simulation's clock starts at 0.
std::int64_t unix_ms(Instant now) { return (now - kEpoch).ms(); }

// The peer's address as the server would write it: IPv4, one per connection.
std::string peer_text(std::uint32_t conn) {
    return "10." + std::to_string(conn >> 16 & 0xFF) + "." + std::to_string(conn >> 8 & 0xFF) + "." +
           std::to_string(conn & 0xFF) + ":4000";
}

}  // namespace

ResumeToken Simulation::random_token() {
    ResumeToken token{};
    for (std::uint8_t& b : token) b = static_cast<std::uint8_t>(rng_());
    return token;
}

void Simulation::add_takeover_connections() {
    const std::size_t configured = conns_.size();
    for (std::size_t i = 0; i < configured; ++i) {
        Connection& c = *conns_[i];
        if (c.outcome.fate == PeerFate::impostor) claim_a_live_id(c);
        if (c.outcome.fate == PeerFate::replaced) add_comeback(c);
    }
}

void Simulation::claim_a_live_id(Connection& impostor) {
    // A healthy victim stays open all run: the claim always meets a live holder.
    const std::size_t n = config_.connections;
    const std::size_t from = rng_() % n;
    for (std::size_t k = 0; k < n; ++k) {
        const Connection& victim = *conns_[(from + k) % n];
        if (victim.outcome.fate != PeerFate::healthy) continue;
        impostor.outcome.claims = victim.outcome.id;
        impostor.client_config.id = victim.client_config.id;
        if (chance(0.5)) impostor.client_config.resume_token = token_text(random_token());  // A guess.
        return;
    }
    impostor.outcome.fate = PeerFate::healthy;  // Nobody to impersonate: an ordinary late client.
}

void Simulation::add_comeback(const Connection& replaced) {
    auto c = std::make_unique<Connection>();
    const auto id = static_cast<std::uint32_t>(conns_.size());
    c->outcome.id = id;
    c->outcome.fate = PeerFate::returned;
    c->outcome.claims = replaced.outcome.id;
    c->base_delay = uniform(config_.network.min_base_delay, config_.network.max_base_delay);
    c->server.timer.conn = id;
    c->client.timer.conn = id;
    c->client_config = replaced.client_config;  // The same id; the token is read at start.
    // Soon after the path dropped: long before the server could judge the old one dead.
    push(replaced.outcome.fault_at + uniform(Duration::milliseconds(10), config_.interval / 2), EventKind::client_start,
         id);
    conns_.push_back(std::move(c));
}

void Simulation::prepare_client(Connection& c) {
    if (c.outcome.fate != PeerFate::returned) return;
    // What lifeline::Client does: present the token its last WELCOME issued.
    const Connection& old = *conns_[*c.outcome.claims];
    if (old.client.session) c.client_config.resume_token = old.client.session->resume_token();
}

void Simulation::admit(Connection& c, const SessionEvent& hello, Instant now) {
    ServerSession& s = *c.server.session;
    const IdClaim claim = directory_.check(hello.client_id, hello.resume_token);
    c.outcome.claim_met_holder = claim.in_use;
    if (!config_.admit_every_claim && !claim.may_take_over()) {
        s.reject(static_cast<std::uint16_t>(CloseCode::id_in_use), "client id in use");
        trace(now, c, "refused: claimed " + hello.client_id + " without its resume token");
        return;
    }
    if (hello.client_id.empty()) {
        [[maybe_unused]] Result<void> admitted = s.admit("", now);  // Admitting, no token: cannot fail.
        return;
    }
    const ResumeToken token = directory_.token_for(hello.client_id, c.outcome.id);
    [[maybe_unused]] Result<void> admitted = s.admit(token_text(token), now);  // Admitting, 16 bytes: cannot fail.
    const SessionDirectory::Admitted a =
        directory_.admit(hello.client_id, holder(c.outcome), peer_text(c.outcome.id), unix_ms(now));
    // From here the directory holds the id, once; the session refers to it until end_session().
    s.use_stored_id(a.stored);
    c.id_pinned = true;
    if (!a.replaced) return;
    Connection& o = *conns_[a.replaced->slot];
    if (!o.server.open) return;
    o.server.session->close(CloseCode::session_replaced, "the same client connected again",
                            DisconnectReason::session_replaced);
    after_server(o, now);
    trace(now, o, "replaced by conn " + std::to_string(c.outcome.id));
}

// The session closed: its presence goes offline (fenced), the id is
// released, and the stored id unpinned once nothing reads it.
void Simulation::end_session(Connection& c, DisconnectReason reason, Instant now) {
    ServerSession& s = *c.server.session;
    const std::string_view id = s.chosen_id();
    if (id.empty()) return;
    offline_check(c, reason, directory_.offline(id, c.outcome.id, reason, unix_ms(now)));
    directory_.release(id, holder(c.outcome));
    if (!c.id_pinned) return;
    s.forget_stored_id();
    c.id_pinned = false;
    directory_.unpin(id);  // `id` is the stored one: valid until this returns.
}

// Admitted, a session was online in an epoch; its offline is fenced out
// exactly when it was replaced, and names its epoch either way.
void Simulation::offline_check(const Connection& c, DisconnectReason reason, const PresenceOffline& o) {
    if (!c.id_pinned) return;  // Refused: never online.
    const bool replaced = reason == DisconnectReason::session_replaced;
    if (o.epoch == 0) {
        violation(c, "presence: its offline named no epoch, as if never online");
    } else if (o.applied == replaced) {
        violation(c, std::string("presence: its offline ") +
                         (replaced ? "applied although it was replaced" : "was fenced out, nothing replaced it") +
                         " (epoch " + std::to_string(o.epoch) + ")");
    }
}

void Simulation::takeover_checks(const Connection& c) {
    const ConnectionOutcome& o = c.outcome;
    auto reason = [](const std::optional<DisconnectReason>& r) {
        return r ? std::string(lifeline::to_string(*r)) : std::string("still open");
    };
    if (o.fate == PeerFate::impostor) {
        if (o.server_reason != DisconnectReason::rejected || o.client_reason != DisconnectReason::rejected)
            violation(c, "impostor claiming conn " + std::to_string(*o.claims) + "'s id was not refused (server: " +
                             reason(o.server_reason) + ", client: " + reason(o.client_reason) + ")");
    }
    if (o.fate == PeerFate::returned) {
        if (!o.opened) violation(c, "came back with its resume token and was not admitted");
        const ConnectionOutcome& old = conns_[*o.claims]->outcome;
        if (o.claim_met_holder && old.server_reason != DisconnectReason::session_replaced)
            violation(c, "its comeback did not replace conn " + std::to_string(old.id) +
                             " (that one ended: " + reason(old.server_reason) + ")");
    }
    if (o.server_reason == DisconnectReason::session_replaced && o.fate != PeerFate::replaced)
        violation(c, "replaced although nobody presented its resume token");
}

// At the end: the sessions open with an id are exactly the ones online.
void Simulation::presence_checks() {
    std::size_t open = 0;
    for (const auto& c : conns_) open += c->server.open && c->id_pinned ? 1 : 0;
    if (open != directory_.online_count())
        report_.violations.push_back("seed=" + std::to_string(config_.seed) + ": presence has " +
                                     std::to_string(directory_.online_count()) + " online, but " +
                                     std::to_string(open) + " sessions with an id are open");
}

}  // namespace lifeline::sim::detail
