// Bytes waiting for a socket that would not take them yet. Internal.
//
// Control frames (PING, PONG, CLOSE) go out at the next frame boundary ahead of
// queued DATA, so a peer receiving a large backlog still hears our heartbeats
// and is not declared dead by mistake. Frames are self-delimiting (length
// prefix), so the queue finds boundaries without an index. In raw mode there
// are no frames: bytes go out in order.
//
// A connection allocates a queue only while something is pending; an idle
// connection holds none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace lifeline::runtime {

class OutputQueue {
public:
    explicit OutputQueue(bool framed) : framed_(framed) {}

    // `bytes` must be whole frames when framed. `already_started` marks the
    // rest of a frame whose beginning is already on the wire: it goes first.
    void push(std::span<const std::uint8_t> bytes, bool control, bool already_started = false);

    std::size_t queued_bytes() const;
    bool empty() const { return queued_bytes() == 0; }

    struct FlushResult {
        std::size_t written = 0;
        bool would_block = false;  // The socket's buffer is full: wait for EPOLLOUT.
        int error = 0;             // errno of a failed send (EPIPE, ECONNRESET, ...)
    };
    // Sends as much as the socket takes, frame by frame, control first.
    FlushResult flush(int fd);

    // For a sender that is not a send() call (io_uring): the next bytes to
    // send, in flush() order (empty when nothing is queued), and how many of
    // them went. The span stays valid until consume(); push() does not move it.
    // With `batch`, the pending control frames and then as many whole DATA
    // frames as fit in `batch` bytes (at least one) come as one span, so a
    // backlog leaves in few sends; control frames then wait behind at most
    // one batch.
    std::span<const std::uint8_t> front(std::size_t batch = 0);
    void consume(std::size_t sent) { current_pos_ += sent; }
    // The span front() returned has been consumed whole.
    bool front_done() const { return current_pos_ == current_.size(); }
    // Bytes queued behind the span front() returned.
    std::size_t behind_front() const { return control_.size() + (data_.size() - data_pos_); }

private:
    bool load_next(std::size_t batch);
    std::size_t next_data_len() const;

    std::vector<std::uint8_t> current_;  // The frame being written (its unsent rest).
    std::size_t current_pos_ = 0;
    std::vector<std::uint8_t> control_;  // Whole control frames.
    std::vector<std::uint8_t> data_;     // Whole DATA frames (or raw bytes).
    std::size_t data_pos_ = 0;
    bool framed_;
};

}  // namespace lifeline::runtime
