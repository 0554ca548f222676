#include "lifeline/engine/session_event.hpp"

namespace lifeline {

SessionOutbox::Pending& SessionOutbox::pending() {
    if (!pending_) pending_ = std::make_unique<Pending>();
    return *pending_;
}

Result<void> SessionOutbox::frame(const Frame& f, bool control, std::size_t max_body_size) {
    Pending& p = pending();
    return append_frame(control ? p.control : p.data, f, max_body_size);
}

void SessionOutbox::bytes(std::span<const std::uint8_t> data) {
    std::vector<std::uint8_t>& out = pending().data;
    out.insert(out.end(), data.begin(), data.end());
}

void SessionOutbox::control_bytes(std::span<const std::uint8_t> data) {
    std::vector<std::uint8_t>& out = pending().control;
    out.insert(out.end(), data.begin(), data.end());
}

void SessionOutbox::event(SessionEvent e) { pending().events.push_back(std::move(e)); }

std::optional<Transmit> SessionOutbox::poll_transmit() {
    release_if_idle();
    if (!pending_) return std::nullopt;
    Pending& p = *pending_;
    p.polled.clear();
    const bool control = !p.control.empty();
    if (control) {
        p.polled.swap(p.control);
    } else if (!p.data.empty()) {
        p.polled.swap(p.data);
    } else {
        return std::nullopt;
    }
    return Transmit{p.polled, control};
}

std::optional<SessionEvent> SessionOutbox::poll_event() {
    if (!pending_ || pending_->next_event == pending_->events.size()) {
        release_if_idle();
        return std::nullopt;
    }
    Pending& p = *pending_;
    SessionEvent e = std::move(p.events[p.next_event++]);
    if (p.next_event == p.events.size()) {
        p.events.clear();
        p.next_event = 0;
    }
    return e;
}

std::size_t SessionOutbox::pending_bytes() const {
    return pending_ ? pending_->control.size() + pending_->data.size() : 0;
}

// Nothing left to hand over: give the memory back, so that idle sessions own
// none. (The bytes of the last Transmit go too; the caller has had them.)
void SessionOutbox::release_if_idle() {
    if (pending_ && pending_->control.empty() && pending_->data.empty() && pending_->events.empty()) pending_.reset();
}

}  // namespace lifeline
