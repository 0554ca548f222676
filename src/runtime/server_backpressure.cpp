// Output backpressure: what a connection does when its peer does not take
// what we send (ServerOptions::output_budget, slow_consumer_after).
#include <algorithm>

#include "lifeline/sys/tcp_info.hpp"
#include "runtime/server_connection.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline::runtime {

void Connection::check_backlog() {
    if (!open()) return;
    EventLoop& loop = worker().loop();
    const std::size_t budget = worker().options().output_budget;
    // High and low water marks: past the budget reading stops, so an echo
    // (or anything the peer's input makes us send) cannot grow the queue by
    // more than one read, and it resumes at half the budget, with room to
    // spare. They count all that is queued (on an io_uring loop also a turn's
    // output not yet offered to the kernel). The slow-consumer clock runs
    // while reading is paused, or while what the kernel refused
    // (backlog_bytes()) is over the budget: output we generate ourselves
    // (push, PINGs) reaches it without any input.
    const std::size_t queued = socket_.queued_bytes();
    if (wants_writable_ && queued <= budget / 2) maybe_writable();
    if (finished_) return;
    if (!socket_.reading_paused() && queued > budget) {
        socket_.pause_reading(loop, *this);
    } else if (socket_.reading_paused() && queued <= budget / 2) {
        socket_.resume_reading(loop, *this);
    }
    // It stops only once the queue is empty: while the kernel's send buffer
    // grows (autotuning, up to net.ipv4.tcp_wmem's maximum) it takes a stuck
    // peer's queue again and again, and every resume would restart the clock.
    const bool over =
        socket_.reading_paused() || socket_.backlog_bytes(loop) > budget || (over_budget_ms() != 0 && queued > 0);
    if (over == (over_budget_ms() != 0)) return;
    set_over_budget_ms(over ? static_cast<std::uint32_t>((loop.now() - session_.accepted_at()).ms()) + 1 : 0);
    rearm();
}

void Connection::refused_over_budget() {
    // The application's sends stop at the budget (send() says `full` rather
    // than queue past it), so for a peer fed only by them the queue never
    // exceeds it. Being refused is being over it: start the clock here, and
    // check_backlog() keeps it running while anything is queued.
    if (over_budget_ms() != 0 || socket_.queued_bytes() == 0) return;
    set_over_budget_ms(static_cast<std::uint32_t>((worker().loop().now() - session_.accepted_at()).ms()) + 1);
    rearm();
}

void Connection::set_over_budget_ms(std::uint32_t ms) {
    if (ms == 0 && extras_if_any() == nullptr) return;
    extras().over_budget_ms = ms;
}

Duration Connection::slow_consumer_grace() const {
    const ServerOptions& o = worker().options();
    if (o.slow_consumer_after > Duration::zero()) return o.slow_consumer_after;
    Duration grace = o.timeout;
    if (o.mode != ServerMode::raw) {
        grace = judged_timeout();
    } else if (o.idle_timeout > Duration::zero()) {
        grace = o.idle_timeout;
    } else if (o.keepalive.enabled) {
        grace = o.keepalive.budget();
    }
    // TCP_USER_TIMEOUT also aborts a live peer behind a zero window (its
    // window probes count): judging at half of it makes the verdict ours.
    const Duration user_timeout = o.keepalive.user_timeout_value();
    if (user_timeout > Duration::zero()) grace = std::min(grace, user_timeout / 2);
    return grace;
}

Instant Connection::over_budget_deadline() const {
    return session_.accepted_at() + Duration::milliseconds(over_budget_ms() - 1) + slow_consumer_grace();
}

void Connection::judge_stalled_output(Instant now) {
    const std::size_t queued = socket_.backlog_bytes(worker().loop());
    Result<sys::TcpInfo> info = sys::read_tcp_info(socket_.fd());
    if (info && sys::classify_output_stall(*info) == sys::OutputStall::path_dead) {
        // Not the peer's fault: unacknowledged data is being retransmitted
        // and nothing comes back. TCP_USER_TIMEOUT (user_timeout), keepalive
        // or heartbeats end it with the reason that is true; reading stays
        // paused, so the queue does not grow meanwhile. Look again later, in
        // case the path comes back and the peer then does not read.
        set_over_budget_ms(static_cast<std::uint32_t>((now - session_.accepted_at()).ms()) + 1);
        return;
    }
    Event e = event(EventKind::error);
    e.message = "peer is not reading: " + std::to_string(queued) + " bytes queued for " +
                to_string(slow_consumer_grace()) + ", budget " + std::to_string(worker().options().output_budget);
    if (info) {
        e.message += "; its window is " + std::to_string(info->snd_wnd) + " bytes and it still acknowledges (" +
                     std::to_string(info->last_ack_received.ms()) + " ms ago)";
    }
    worker().server().emit(e);
    close(DisconnectReason::slow_consumer, e.message);
}

void Connection::credit_unread_input(Instant now) {
    // The peer's heartbeats wait unread behind the pause, and once our receive
    // window is full its kernel can only send window probes, further and
    // further apart (exponential backoff). So while the kernel's view is a live
    // peer that does not read (ACKs still come, window probes are answered),
    // the pause is ours and its silence is not held against the peer; a dead
    // path (sys::classify_output_stall) is convicted as usual.
    Result<sys::TcpInfo> info = sys::read_tcp_info(socket_.fd());
    if (info && sys::classify_output_stall(*info) == sys::OutputStall::peer_not_reading) {
        session_.on_peer_alive(now);
    }
}

}  // namespace lifeline::runtime
