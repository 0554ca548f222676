// The simulation's takeover half: every client has an id, every HELLO goes
// through admit() with the engine's SessionRegistry (the rule lifeline's
// Server applies), and the checks that the rule held for impostors and for
// clients coming back with their resume token.
#include <string>

#include "sim/simulation_internal.hpp"

namespace lifeline::sim::detail {

namespace {

std::string token_text(const ResumeToken& token) {
    return std::string(reinterpret_cast<const char*>(token.data()), token.size());
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
    const IdClaim claim = registry_.check(hello.client_id, hello.resume_token);
    c.outcome.claim_met_holder = claim.in_use;
    if (!config_.admit_every_claim && !claim.may_take_over()) {
        s.reject(static_cast<std::uint16_t>(CloseCode::id_in_use), "client id in use");
        trace(now, c, "refused: claimed " + hello.client_id + " without its resume token");
        return;
    }
    const ResumeToken token = random_token();
    [[maybe_unused]] Result<void> admitted = s.admit(token_text(token), now);  // Admitting, 16 bytes: cannot fail.
    if (hello.client_id.empty()) return;
    const std::optional<std::uint32_t> old = registry_.take(hello.client_id, c.outcome.id, token);
    if (!old) return;
    Connection& o = *conns_[*old];
    if (!o.server.open) return;
    o.server.session->close(CloseCode::session_replaced, "the same client connected again",
                            DisconnectReason::session_replaced);
    after_server(o, now);
    trace(now, o, "replaced by conn " + std::to_string(c.outcome.id));
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

}  // namespace lifeline::sim::detail
