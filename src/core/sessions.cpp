#include "lifeline/engine/sessions.hpp"

namespace lifeline {

// The wheel's node first: an expired node maps back to its entry with a
// static_cast, no lookup.
struct ServerSessions::Entry : TimerNode {
    Entry(const ServerSessionConfig& config, Id id, Instant now) : session(config, id, now) {}
    ServerSession session;
    bool ready = false;  // On ready_ (not yet returned by poll_ready()).
};

ServerSessions::ServerSessions(const ServerSessionConfig& config, Instant now, Duration tick)
    : config_(&config), wheel_(now, TimingWheelConfig{tick}) {}

ServerSessions::~ServerSessions() {
    for (auto& [id, e] : entries_) wheel_.cancel(*e);
}

ServerSessions::Entry* ServerSessions::entry(Id id) {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : it->second.get();
}

ServerSession* ServerSessions::find(Id id) {
    Entry* e = entry(id);
    return e ? &e->session : nullptr;
}

ServerSessions::Id ServerSessions::open(Instant now) {
    const Id id = next_id_++;
    auto [it, inserted] = entries_.emplace(id, std::make_unique<Entry>(*config_, id, now));
    LIFELINE_CHECK(inserted, "session ids are never reused");
    touched(*it->second);
    return id;
}

void ServerSessions::remove(Id id) {
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    wheel_.cancel(*it->second);
    entries_.erase(it);  // A stale id on ready_ is skipped by poll_ready().
}

void ServerSessions::touched(Entry& e) {
    const Instant next = e.session.next_timeout();
    if (next.is_never()) {
        wheel_.cancel(e);
    } else if (!e.armed() || next < e.deadline()) {
        // Later deadlines are taken lazily: the timer fires at the old one,
        // handle_timeout() finds nothing due and it is re-armed then.
        wheel_.schedule(e, next);
    }
    if (!e.ready) {
        e.ready = true;
        ready_.push_back(e.session.number());
    }
}

void ServerSessions::receive(Id id, std::span<const std::uint8_t> bytes, Instant now) {
    if (Entry* e = entry(id)) {
        e->session.receive(bytes, now);
        touched(*e);
    }
}

Result<void> ServerSessions::send(Id id, std::span<const std::uint8_t> payload) {
    Entry* e = entry(id);
    if (!e) return make_error(Errc::not_open, "no session " + std::to_string(id));
    Result<void> r = e->session.send(payload);
    if (r) touched(*e);
    return r;
}

void ServerSessions::close(Id id, CloseCode code, std::string_view text, DisconnectReason reason) {
    if (Entry* e = entry(id)) {
        e->session.close(code, text, reason);
        touched(*e);
    }
}

void ServerSessions::abort(Id id, DisconnectReason reason, std::string_view message) {
    if (Entry* e = entry(id)) {
        e->session.abort(reason, message);
        touched(*e);
    }
}

void ServerSessions::on_sent(Id id, Instant now) {
    if (Entry* e = entry(id)) e->session.on_sent(now);  // Moves deadlines later only: no re-arm needed.
}

void ServerSessions::on_peer_alive(Id id, Instant now) {
    if (Entry* e = entry(id)) e->session.on_peer_alive(now);
}

void ServerSessions::on_local_stall(Instant now, Duration lag) {
    for (auto& [id, e] : entries_) {
        e->session.on_local_stall(now, lag);
        touched(*e);
    }
}

std::size_t ServerSessions::handle_timeouts(Instant now) {
    return wheel_.advance(now, [&](TimerNode& node) {
        Entry& e = static_cast<Entry&>(node);
        e.session.handle_timeout(now);
        touched(e);
    });
}

std::optional<ServerSessions::Id> ServerSessions::poll_ready() {
    while (next_ready_ < ready_.size()) {
        const Id id = ready_[next_ready_++];
        Entry* e = entry(id);
        if (!e) continue;  // Removed since.
        e->ready = false;
        return id;
    }
    ready_.clear();
    next_ready_ = 0;
    return std::nullopt;
}

}  // namespace lifeline
