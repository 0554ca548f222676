#include "lifeline/check.hpp"
#include "lifeline/engine/session_event.hpp"

namespace lifeline {

SessionOutbox::~SessionOutbox() { delete pending_if_any(); }

SessionOutbox& SessionOutbox::operator=(SessionOutbox&& other) noexcept {
    if (this != &other) {
        delete pending_if_any();
        word_ = std::exchange(other.word_, kNothing);
    }
    return *this;
}

void SessionOutbox::park(std::uintptr_t word) {
    LIFELINE_CHECK((word & kParkedTag) == 0, "a parked word leaves bit 0 to the outbox");
    if (Pending* p = pending_if_any()) {
        p->parked = word;
    } else {
        word_ = word | kParkedTag;
    }
}

SessionOutbox::Pending& SessionOutbox::pending() {
    if (Pending* p = pending_if_any()) return *p;
    // As many allocations as before the owner's word moved in here: one.
    auto* p = new Pending();
    p->parked = word_ & ~kParkedTag;
    word_ = reinterpret_cast<std::uintptr_t>(p);
    return *p;
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
    Pending* pending = pending_if_any();
    if (pending == nullptr) return std::nullopt;
    Pending& p = *pending;
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
    Pending* pending = pending_if_any();
    if (pending == nullptr || pending->next_event == pending->events.size()) {
        release_if_idle();
        return std::nullopt;
    }
    Pending& p = *pending;
    SessionEvent e = std::move(p.events[p.next_event++]);
    if (p.next_event == p.events.size()) {
        p.events.clear();
        p.next_event = 0;
    }
    return e;
}

std::size_t SessionOutbox::pending_bytes() const {
    const Pending* p = pending_if_any();
    return p != nullptr ? p->control.size() + p->data.size() : 0;
}

// Nothing left to hand over: give the memory back, so that idle sessions own
// none. (The bytes of the last Transmit go too; the caller has had them.)
void SessionOutbox::release_if_idle() {
    Pending* p = pending_if_any();
    if (p == nullptr || !p->control.empty() || !p->data.empty() || !p->events.empty()) return;
    word_ = p->parked | kParkedTag;
    delete p;
}

}  // namespace lifeline
