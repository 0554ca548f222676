#include "runtime/stream_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace lifeline::runtime {

Result<void> StreamSocket::watch(EventLoop& loop, LoopObject& owner, bool writable) {
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

void StreamSocket::close() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    out_.reset();
}

}  // namespace lifeline::runtime
