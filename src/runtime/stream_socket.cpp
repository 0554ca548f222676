#include "runtime/stream_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/io_ring.hpp"

namespace lifeline::runtime {

Result<void> StreamSocket::watch(EventLoop& loop, LoopObject& owner, bool writable) {
    if (loop.ring() != nullptr) {
        arm_ring_receive(loop, owner);
        return {};
    }
    watching_writable_ = writable;
    return loop.add(fd_, EPOLLIN | EPOLLRDHUP | (writable ? EPOLLOUT : 0u), &owner);
}

void StreamSocket::watch_writable(EventLoop& loop, LoopObject& owner, bool on) {
    if (watching_writable_ == on || fd_ < 0) return;
    watching_writable_ = on;
    // Cannot fail for a registered fd; if it did, the next send's error closes the connection.
    [[maybe_unused]] auto r = loop.modify(fd_, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u), &owner);
}

StreamSocket::SendResult StreamSocket::send(EventLoop& loop, LoopObject& owner, std::span<const std::uint8_t> bytes,
                                            bool control) {
    SendResult r;
    if (fd_ < 0 || bytes.empty()) return r;
    if (loop.ring() != nullptr) {
        if (!out_) out_ = std::make_unique<OutputQueue>(framed_);
        out_->push(bytes, control);
        // Goes at the end of the turn, or when the send in flight completes.
        if (!ring_sending_ && !ring_flush_due_) {
            ring_flush_due_ = true;
            ++ring_ops_;
            loop.flush_at_end_of_turn(owner);
        }
        r.written_now = bytes.size();  // Will be handed to the kernel this turn.
        return r;
    }
    if (out_ && !out_->empty()) {
        out_->push(bytes, control);
        return r;
    }
    // The common case: the kernel takes it all and nothing is buffered.
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        r.error = errno;
        return r;
    }
    r.written_now = n > 0 ? static_cast<std::size_t>(n) : 0;
    bytes_out_ += r.written_now;
    if (r.written_now == bytes.size()) return r;
    if (!out_) out_ = std::make_unique<OutputQueue>(framed_);
    out_->push(bytes.subspan(r.written_now), control, /*already_started=*/r.written_now > 0);
    watch_writable(loop, owner, true);
    return r;
}

OutputQueue::FlushResult StreamSocket::flush(EventLoop& loop, LoopObject& owner) {
    if (!out_ || fd_ < 0) return {};
    const OutputQueue::FlushResult r = out_->flush(fd_);
    bytes_out_ += r.written;
    if (r.error == 0 && !r.would_block) {
        out_.reset();  // Idle again: no buffer.
        watch_writable(loop, owner, false);
    }
    return r;
}

StreamSocket::ReadResult StreamSocket::read(std::span<std::uint8_t> into) {
    while (true) {
        const ssize_t n = ::recv(fd_, into.data(), into.size(), MSG_DONTWAIT);
        if (n > 0) {
            bytes_in_ += static_cast<std::uint64_t>(n);
            return {ReadStatus::data, static_cast<std::size_t>(n), 0};
        }
        if (n == 0) return {ReadStatus::eof, 0, 0};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {ReadStatus::would_block, 0, 0};
        return {ReadStatus::error, 0, errno};
    }
}

void StreamSocket::arm_ring_receive(EventLoop& loop, LoopObject& owner) {
    loop.ring()->receive(fd_, owner);
    ++ring_ops_;
}

void StreamSocket::start_ring_send(EventLoop& loop, LoopObject& owner) {
    const std::span<const std::uint8_t> next = out_->front();
    if (next.empty()) {
        out_.reset();  // Idle again: no buffer.
        return;
    }
    loop.ring()->send(fd_, next, owner);
    ring_sending_ = true;
    ++ring_ops_;
}

StreamSocket::ReadResult StreamSocket::received(EventLoop& loop, LoopObject& owner, const RingCompletion& c) {
    if (!c.more) --ring_ops_;
    if (ring_closing_) {
        finish_ring_close_if_idle();
        return {ReadStatus::would_block, 0, 0};
    }
    if (c.result > 0) {
        bytes_in_ += static_cast<std::uint64_t>(c.result);
        if (!c.more) arm_ring_receive(loop, owner);
        return {ReadStatus::data, static_cast<std::size_t>(c.result), 0};
    }
    if (c.result == 0) return {ReadStatus::eof, 0, 0};
    if (c.result == -ENOBUFS) {
        // Every buffer of the loop's ring was in use: the bytes wait in the socket.
        arm_ring_receive(loop, owner);
        return {ReadStatus::would_block, 0, 0};
    }
    return {ReadStatus::error, 0, -c.result};
}

StreamSocket::SentResult StreamSocket::sent(EventLoop& loop, LoopObject& owner, const RingCompletion& c) {
    --ring_ops_;
    ring_sending_ = false;
    if (ring_closing_) {
        finish_ring_close_if_idle();
        return {};
    }
    if (c.result < 0) return {0, -c.result};
    const auto written = static_cast<std::size_t>(c.result);
    out_->consume(written);  // All of the front (MSG_WAITALL), unless the kernel says otherwise.
    bytes_out_ += written;
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
    if (!ring_sending_ && out_) start_ring_send(loop, owner);
}

void StreamSocket::finish_ring_close_if_idle() {
    if (ring_ops_ > 0) return;
    ring_closing_ = false;
    close();
}

void StreamSocket::close() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    out_.reset();
}

void StreamSocket::close(EventLoop& loop) {
    if (fd_ < 0 || ring_closing_ || loop.ring() == nullptr || ring_ops_ == 0) {
        close();
        return;
    }
    // What this turn queued (a last PONG, a CLOSE frame) has not reached the
    // ring yet: send it now, in order, as the epoll path would.
    if (!ring_sending_ && out_) bytes_out_ += out_->flush(fd_).written;
    // The fd stays open (its number reserved: queued submissions may name it)
    // until the ring's operations end, which the shutdown makes them do: the
    // receive completes with end of stream, a pending send with EPIPE. The
    // peer sees the FIN now.
    ::shutdown(fd_, SHUT_RDWR);
    ring_closing_ = true;
}

}  // namespace lifeline::runtime
