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
#include <optional>
#include <span>

#include "lifeline/result.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/output_queue.hpp"

namespace lifeline::runtime {

// Holds no reference to its loop or owner (an idle connection pays for every
// byte here): calls that touch epoll take them as arguments.
class StreamSocket {
public:
    StreamSocket(int fd, bool framed) : fd_(fd), framed_(framed), ring_(false) {}
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

    // Input backpressure: stop taking input from the peer (epoll: stop
    // watching EPOLLIN; io_uring: cancel the armed receive) until
    // resume_reading(). Errors and hang-ups are still reported. What was
    // already received may still arrive once after pause_reading().
    void pause_reading(EventLoop& loop, LoopObject& owner);
    void resume_reading(EventLoop& loop, LoopObject& owner);
    bool reading_paused() const { return reading_paused_; }

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
    // Before close(loop), while the fd is still usable: on an io_uring loop,
    // sends what this turn queued (a last PONG, a CLOSE frame) at once, in
    // order, as the epoll path would have. A no-op otherwise.
    void send_before_close();
    // On an io_uring loop with operations in flight: shuts the socket down so
    // they end, and closes the fd when the last one completes. If a send is in
    // flight, what is queued behind it (a CLOSE frame) follows it first:
    // returns true, and the owner must call abort_linger() if that send has
    // not completed in a bounded time (a peer that does not read). Otherwise
    // the same as close(); returns false.
    bool close(EventLoop& loop);
    void abort_linger();

    int fd() const { return fd_; }
    bool served_by_ring() const { return ring_; }
    bool open() const { return fd_ >= 0 && !ring_closing_; }
    // Everything not yet handed to the kernel, or handed and not yet taken.
    std::size_t queued_bytes() const {
        const OutputQueue* q = out();
        return q != nullptr ? q->queued_bytes() : 0;
    }
    // What the output budget holds against the peer: bytes queued while the
    // kernel would not take what it was offered. On an io_uring loop a
    // turn's output is offered only at its end, so it cannot count as refused
    // before then: the queue counts once a send came back short (until one is
    // taken whole), or while a send has waited in the kernel for more than a
    // turn (the socket's buffer is full and nothing of it went).
    std::size_t backlog_bytes(const EventLoop& loop) const {
        if (!ring_ || ring_refused_) return queued_bytes();
        const auto waited = static_cast<std::uint8_t>(static_cast<std::uint8_t>(loop.turns()) - ring_send_turn_);
        return ring_sending_ && waited >= 2 ? queued_bytes() : 0;
    }
    std::uint64_t bytes_in() const { return (std::uint64_t{cold_ ? cold_->bytes_in_high : 0u} << 32) | bytes_in_low_; }
    std::uint64_t bytes_out() const {
        return (std::uint64_t{cold_ ? cold_->bytes_out_high : 0u} << 32) | bytes_out_low_;
    }

private:
    void watch_writable(EventLoop& loop, LoopObject& owner, bool on);
    void update_epoll(EventLoop& loop, LoopObject& owner);
    void start_ring_send(EventLoop& loop, LoopObject& owner);
    void arm_ring_receive(EventLoop& loop, LoopObject& owner);
    void finish_ring_close_if_idle();
    // The output queue, while there is one (nullptr: nothing is queued).
    OutputQueue* out() const { return cold_ && cold_->queue ? &*cold_->queue : nullptr; }
    OutputQueue& make_out();
    // Idle again: the queue's memory goes (and the rest of cold_ unless the counts need it).
    void drop_out();
    void count_in(std::size_t bytes);
    void count_out(std::size_t bytes);

    // What an idle socket does not need, on the heap only while something
    // does: the output queue, and the high halves of the byte counts once one
    // has passed 4 GiB. An idle connection pays 8 bytes for all of it, and
    // 8 for its two counts (32-bit halves here) instead of 16.
    struct Cold {
        std::optional<OutputQueue> queue;
        std::uint32_t bytes_in_high = 0;
        std::uint32_t bytes_out_high = 0;
    };
    std::unique_ptr<Cold> cold_;
    std::uint32_t bytes_in_low_ = 0;  // With cold_->bytes_in_high: bytes_in().
    std::uint32_t bytes_out_low_ = 0;
    int fd_;
    // Bit-fields: an idle connection pays for every byte of this class.
    bool framed_ : 1;
    bool ring_ : 1;  // Served by the loop's IoRing (set by watch()).
    bool watching_writable_ : 1 = false;
    bool ring_sending_ : 1 = false;    // A send is in flight (the queue's front is the kernel's).
    bool ring_flush_due_ : 1 = false;  // Output queued this turn; the loop calls back at its end.
    bool ring_closing_ : 1 = false;    // Shut down; the fd closes when ring_ops_ reaches 0.
    bool ring_lingering_ : 1 = false;  // Closing, the queue still to follow the send in flight.
    bool ring_refused_ : 1 = false;    // The last send came back short: the peer is behind.
    std::uint8_t ring_ops_ : 2 = 0;    // Receive armed + send in flight + flush due (at most 3).
    bool ring_receiving_ : 1 = false;  // The multishot receive is armed (it counts in ring_ops_).
    bool reading_paused_ : 1 = false;  // pause_reading(): no input taken until resume_reading().
    std::uint8_t ring_send_turn_ = 0;  // Low bits of the loop turn the send in flight left in.
};

}  // namespace lifeline::runtime
