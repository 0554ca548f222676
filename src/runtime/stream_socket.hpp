// A connected, non-blocking TCP socket registered with one event loop: direct
// writes when the kernel takes them, an OutputQueue only while it does not,
// and bounded reads into the loop's scratch buffer. Shared by the server's
// and the client's connections. Internal to src/runtime.
//
// On a loop with an IoRing the socket makes no system calls of its own: a
// multishot receive delivers input to the owner's on_ring(), which hands the
// completion to received(). Sends are queued in the OutputQueue and leave at
// the end of the turn (the owner's on_ring_flush() calls flush_turn()), all of
// a turn's frames in one send, one send in flight at a time so bytes cannot
// interleave; sent() starts the next. The owner must outlive its in-flight
// operations: ring_busy() says when it may go.
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

    // io_uring loops, from the owner's on_ring(). received(): what a receive
    // completion means (data is in the completion's bytes); it re-arms the
    // receive when the kernel ended it. sent(): a send finished; starts the next.
    ReadResult received(EventLoop& loop, LoopObject& owner, const RingCompletion& completion);
    struct SentResult {
        std::size_t written = 0;
        int error = 0;  // errno of a failed send; the connection is broken.
    };
    SentResult sent(EventLoop& loop, LoopObject& owner, const RingCompletion& completion);
    void flush_turn(EventLoop& loop, LoopObject& owner);
    // Operations still in flight in the ring: the owner must not be freed yet.
    bool ring_busy() const { return ring_ops_ > 0; }

    // Closes the fd, which also takes it out of its epoll set (we never dup it). Idempotent.
    void close();
    // On an io_uring loop with operations in flight: sends what this turn
    // queued, shuts the socket down (so they end) and closes the fd when the
    // last one completes. Otherwise the same as close().
    void close(EventLoop& loop);

    int fd() const { return fd_; }
    bool open() const { return fd_ >= 0 && !ring_closing_; }
    std::size_t queued_bytes() const { return out_ ? out_->queued_bytes() : 0; }
    std::uint64_t bytes_in() const { return bytes_in_; }
    std::uint64_t bytes_out() const { return bytes_out_; }

private:
    void watch_writable(EventLoop& loop, LoopObject& owner, bool on);
    void start_ring_send(EventLoop& loop, LoopObject& owner);
    void arm_ring_receive(EventLoop& loop, LoopObject& owner);
    void finish_ring_close_if_idle();

    std::unique_ptr<OutputQueue> out_;
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
    int fd_;
    bool framed_;
    bool watching_writable_ = false;
    bool ring_sending_ = false;    // A send is in flight (the queue's front is the kernel's).
    bool ring_flush_due_ = false;  // Output queued this turn; the loop calls back at its end.
    bool ring_closing_ = false;    // Shut down; the fd closes when ring_ops_ reaches 0.
    std::uint8_t ring_ops_ = 0;    // Receive armed + send in flight + flush due.
};

}  // namespace lifeline::runtime
