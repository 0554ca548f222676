// A connected, non-blocking TCP socket registered with one event loop: direct
// writes when the kernel takes them, an OutputQueue only while it does not,
// and bounded reads into the loop's scratch buffer. Shared by the server's
// and the client's connections. Internal to src/runtime.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "lifeline/result.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/output_queue.hpp"

namespace lifeline::runtime {

// Holds no reference to its loop or owner (an idle connection pays for every
// byte here): calls that touch epoll take them as arguments.
class StreamSocket {
public:
    StreamSocket(int fd, bool framed) : fd_(fd), framed_(framed) {}
    ~StreamSocket() { close(); }
    StreamSocket(const StreamSocket&) = delete;
    StreamSocket& operator=(const StreamSocket&) = delete;

    // Starts watching for input (EPOLLIN | EPOLLRDHUP), plus EPOLLOUT if `writable`.
    Result<void> watch(EventLoop& loop, LoopObject& owner, bool writable = false);

    struct SendResult {
        std::size_t written_now = 0;  // Bytes the kernel took at once.
        int error = 0;                // errno of a failed send; the connection is broken.
    };
    // Sends `bytes` (whole frames when framed); what the kernel does not take is queued.
    SendResult send(EventLoop& loop, LoopObject& owner, std::span<const std::uint8_t> bytes, bool control);
    // On EPOLLOUT: sends what is queued. Stops watching EPOLLOUT once empty.
    OutputQueue::FlushResult flush(EventLoop& loop, LoopObject& owner);

    // After a non-blocking connect completed: EPOLLOUT matters only while something is queued.
    void connected(EventLoop& loop, LoopObject& owner) {
        if (queued_bytes() == 0) watch_writable(loop, owner, false);
    }

    enum class ReadStatus { data, would_block, eof, error };
    struct ReadResult {
        ReadStatus status;
        std::size_t bytes = 0;
        int error = 0;
    };
    ReadResult read(std::span<std::uint8_t> into);

    // Closes the fd, which also takes it out of its epoll set (we never dup it). Idempotent.
    void close();

    int fd() const { return fd_; }
    bool open() const { return fd_ >= 0; }
    std::size_t queued_bytes() const { return out_ ? out_->queued_bytes() : 0; }
    std::uint64_t bytes_in() const { return bytes_in_; }
    std::uint64_t bytes_out() const { return bytes_out_; }

private:
    void watch_writable(EventLoop& loop, LoopObject& owner, bool on);

    std::unique_ptr<OutputQueue> out_;
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
    int fd_;
    bool framed_;
    bool watching_writable_ = false;
};

}  // namespace lifeline::runtime
