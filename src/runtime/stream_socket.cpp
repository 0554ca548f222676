#include "runtime/stream_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/io_ring.hpp"

namespace lifeline::runtime {

// shutdown(2) on a connected socket fails only with ENOTCONN, when the peer
// already reset it: then the ring operations it is meant to end have ended
// (or fail) on their own, and the socket is as shut as it gets. So its result
// is ignored everywhere below, on purpose.

Result<void> StreamSocket::watch(EventLoop& loop, LoopObject& owner, bool writable) {
    if (loop.ring() != nullptr) {
        ring_ = true;
        arm_ring_receive(loop, owner);
        return {};
    }
    watching_writable_ = writable;
    return loop.add(fd_, EPOLLIN | EPOLLRDHUP | (writable ? EPOLLOUT : 0u), &owner);
}

void StreamSocket::watch_writable(EventLoop& loop, LoopObject& owner, bool on) {
    if (watching_writable_ == on || fd_ < 0) return;
    watching_writable_ = on;
    update_epoll(loop, owner);
}

void StreamSocket::update_epoll(EventLoop& loop, LoopObject& owner) {
    // Paused: not even EPOLLRDHUP, which stays ready (level-triggered) while
    // the peer's FIN waits behind unread bytes. EPOLLERR and EPOLLHUP are
    // always reported.
    const std::uint32_t input = reading_paused_ ? 0u : EPOLLIN | EPOLLRDHUP;
    // EPOLL_CTL_MOD fails only for an fd that is not registered (a bug) or
    // ENOMEM; then the fd would keep its old interest, so end the connection
    // rather than spin or go deaf: the next send or read reports EBADF.
    if (auto r = loop.modify(fd_, input | (watching_writable_ ? EPOLLOUT : 0u), &owner); !r) {
        ::shutdown(fd_, SHUT_RDWR);
    }
}

void StreamSocket::pause_reading(EventLoop& loop, LoopObject& owner) {
    if (reading_paused_ || fd_ < 0 || ring_closing_) return;
    reading_paused_ = true;
    if (!ring_) {
        update_epoll(loop, owner);
    } else if (ring_receiving_) {
        loop.ring()->cancel_receive(owner);
    }
}

void StreamSocket::resume_reading(EventLoop& loop, LoopObject& owner) {
    if (!reading_paused_ || fd_ < 0 || ring_closing_) return;
    reading_paused_ = false;
    if (!ring_) {
        update_epoll(loop, owner);
    } else if (!ring_receiving_) {
        arm_ring_receive(loop, owner);  // Else the cancelled one re-arms when it ends.
    }
}

StreamSocket::SendResult StreamSocket::send(EventLoop& loop, LoopObject& owner, std::span<const std::uint8_t> bytes,
                                            bool control) {
    SendResult r;
    if (fd_ < 0 || bytes.empty()) return r;
    if (ring_) {
        make_out().push(bytes, control);
        // Goes at the end of the turn, or when the send in flight completes.
        if (!ring_sending_ && !ring_flush_due_) {
            ring_flush_due_ = true;
            ++ring_ops_;
            loop.flush_at_end_of_turn(owner);
        }
        return r;  // Nothing taken yet: sent() counts what the kernel takes.
    }
    if (OutputQueue* q = out(); q != nullptr && !q->empty()) {
        q->push(bytes, control);
        return r;
    }
    // The common case: the kernel takes it all and nothing is buffered.
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        r.error = errno;
        return r;
    }
    r.written_now = n > 0 ? static_cast<std::size_t>(n) : 0;
    count_out(r.written_now);
    if (r.written_now == bytes.size()) return r;
    make_out().push(bytes.subspan(r.written_now), control, /*already_started=*/r.written_now > 0);
    watch_writable(loop, owner, true);
    return r;
}

OutputQueue::FlushResult StreamSocket::flush(EventLoop& loop, LoopObject& owner) {
    OutputQueue* q = out();
    if (q == nullptr || fd_ < 0) return {};
    const OutputQueue::FlushResult r = q->flush(fd_);
    count_out(r.written);
    if (r.error == 0 && !r.would_block) {
        drop_out();  // Idle again: no buffer.
        watch_writable(loop, owner, false);
    }
    return r;
}

StreamSocket::ReadResult StreamSocket::read(std::span<std::uint8_t> into) {
    while (true) {
        const ssize_t n = ::recv(fd_, into.data(), into.size(), MSG_DONTWAIT);
        if (n > 0) {
            count_in(static_cast<std::size_t>(n));
            return {ReadStatus::data, static_cast<std::size_t>(n), 0};
        }
        if (n == 0) return {ReadStatus::eof, 0, 0};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {ReadStatus::would_block, 0, 0};
        return {ReadStatus::error, 0, errno};
    }
}

OutputQueue& StreamSocket::make_out() {
    if (!cold_) cold_ = std::make_unique<Cold>();
    if (!cold_->queue) cold_->queue.emplace(bool{framed_});
    return *cold_->queue;
}

void StreamSocket::drop_out() {
    if (!cold_) return;
    if (cold_->bytes_in_high == 0 && cold_->bytes_out_high == 0) {
        cold_.reset();
    } else {
        cold_->queue.reset();
    }
}

// The low halves wrap into cold_, which a socket then keeps: once per 4 GiB,
// never on an idle connection's heartbeats.
void StreamSocket::count_in(std::size_t bytes) {
    const std::uint64_t sum = std::uint64_t{bytes_in_low_} + bytes;
    bytes_in_low_ = static_cast<std::uint32_t>(sum);
    if ((sum >> 32) == 0) return;
    if (!cold_) cold_ = std::make_unique<Cold>();
    cold_->bytes_in_high += static_cast<std::uint32_t>(sum >> 32);
}

void StreamSocket::count_out(std::size_t bytes) {
    const std::uint64_t sum = std::uint64_t{bytes_out_low_} + bytes;
    bytes_out_low_ = static_cast<std::uint32_t>(sum);
    if ((sum >> 32) == 0) return;
    if (!cold_) cold_ = std::make_unique<Cold>();
    cold_->bytes_out_high += static_cast<std::uint32_t>(sum >> 32);
}

void StreamSocket::arm_ring_receive(EventLoop& loop, LoopObject& owner) {
    loop.ring()->receive(fd_, owner);
    ring_receiving_ = true;
    ++ring_ops_;
}

// One send carries the pending control frames and DATA frames up to this
// much: more than a turn's receives can bring in for an echo (256 x 2 KiB),
// so a backlog drains at least as fast as it can grow.
constexpr std::size_t kRingSendBatch = 1024 * 1024;

void StreamSocket::start_ring_send(EventLoop& loop, LoopObject& owner) {
    const std::span<const std::uint8_t> next = out()->front(kRingSendBatch);
    if (next.empty()) {
        drop_out();  // Idle again: no buffer.
        return;
    }
    loop.ring()->send(fd_, next, owner);
    ring_sending_ = true;
    ring_send_turn_ = static_cast<std::uint8_t>(loop.turns());
    ++ring_ops_;
}

StreamSocket::ReadResult StreamSocket::received(EventLoop& loop, LoopObject& owner, const RingCompletion& c) {
    if (!c.more) {
        --ring_ops_;
        ring_receiving_ = false;
    }
    if (ring_closing_) {
        finish_ring_close_if_idle();
        return {ReadStatus::would_block, 0, 0};
    }
    // The receive ended without an error of the socket's: armed again unless
    // reading is paused (resume_reading() arms it then).
    const bool rearm = !c.more && !reading_paused_;
    if (c.result > 0) {
        count_in(static_cast<std::size_t>(c.result));
        if (rearm) arm_ring_receive(loop, owner);
        return {ReadStatus::data, static_cast<std::size_t>(c.result), 0};
    }
    if (c.result == 0) return {ReadStatus::eof, 0, 0};
    // ENOBUFS: every buffer of the loop's ring was in use, the bytes wait in
    // the socket. ECANCELED: pause_reading() ended it.
    if (c.result == -ENOBUFS || c.result == -ECANCELED) {
        if (rearm) arm_ring_receive(loop, owner);
        return {ReadStatus::would_block, 0, 0};
    }
    return {ReadStatus::error, 0, -c.result};
}

StreamSocket::SentResult StreamSocket::sent(EventLoop& loop, LoopObject& owner, const RingCompletion& c) {
    --ring_ops_;
    ring_sending_ = false;
    const std::size_t written = c.result > 0 ? static_cast<std::size_t>(c.result) : 0;
    count_out(written);
    if (ring_closing_) {
        if (ring_lingering_) {
            // The send in flight at close() is done: what was queued behind it
            // (a CLOSE frame) follows now, then the FIN.
            ring_lingering_ = false;
            if (OutputQueue* q = out(); c.result >= 0 && q != nullptr) {
                q->consume(written);
                count_out(q->flush(fd_).written);
            }
            ::shutdown(fd_, SHUT_WR);
        }
        finish_ring_close_if_idle();
        return {};
    }
    if (c.result < 0) return {0, -c.result};
    out()->consume(written);
    ring_refused_ = !out()->front_done();  // Short: the socket's buffer is full; the rest goes next.
    start_ring_send(loop, owner);
    return {written, 0};
}

void StreamSocket::flush_turn(EventLoop& loop, LoopObject& owner) {
    ring_flush_due_ = false;
    --ring_ops_;
    if (ring_closing_) {
        finish_ring_close_if_idle();
        return;
    }
    if (!ring_sending_ && out() != nullptr) start_ring_send(loop, owner);
}

void StreamSocket::finish_ring_close_if_idle() {
    if (ring_ops_ > 0) return;
    ring_closing_ = false;
    close();
}

void StreamSocket::close() {
    if (fd_ < 0) return;
    // Ignored on purpose: Linux frees the descriptor even when close() reports
    // an error (EINTR, EIO), so there is nothing to retry; a socket's unsent
    // data is the kernel's from here on.
    ::close(fd_);
    fd_ = -1;
    drop_out();
}

void StreamSocket::send_before_close() {
    if (OutputQueue* q = out(); ring_ && fd_ >= 0 && !ring_closing_ && !ring_sending_ && q != nullptr)
        count_out(q->flush(fd_).written);
}

bool StreamSocket::close(EventLoop& loop) {
    if (fd_ < 0 || ring_closing_ || loop.ring() == nullptr || ring_ops_ == 0) {
        close();
        return false;
    }
    send_before_close();
    // The fd stays open (its number reserved: queued submissions may name it)
    // until the ring's operations end, which the shutdown makes them do: the
    // receive completes with end of stream, a pending send with EPIPE.
    ring_closing_ = true;
    if (const OutputQueue* q = out(); ring_sending_ && q != nullptr && q->behind_front() > 0) {
        ::shutdown(fd_, SHUT_RD);  // Writing ends when the send in flight completes (sent()).
        ring_lingering_ = true;
        return true;
    }
    ::shutdown(fd_, SHUT_RDWR);
    return false;
}

void StreamSocket::abort_linger() {
    if (!ring_lingering_ || fd_ < 0) return;
    ring_lingering_ = false;
    ::shutdown(fd_, SHUT_RDWR);  // The stuck send fails with EPIPE; its completion closes the fd.
}

}  // namespace lifeline::runtime
