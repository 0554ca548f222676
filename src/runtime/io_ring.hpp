// The io_uring half of an EventLoop (`serve --io uring`): connection sockets
// are served with no system call of their own. Each has one multishot receive
// that takes its buffer from a ring shared by the whole loop (an idle
// connection holds none), sends are queued as submissions, and the loop makes
// one io_uring_enter per turn that submits everything queued and waits for
// completions, its epoll set included (a multishot poll on the epoll fd).
// Internal to src/runtime.
//
// Completions reach the LoopObject that asked, through on_ring(). Its address
// is the completion's tag, so an owner must stay alive until every operation
// it started has completed (StreamSocket counts them, and shuts its socket
// down to end them).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lifeline/result.hpp"
#include "lifeline/time.hpp"
#include "runtime/event_loop.hpp"

// liburing's types stay in io_ring.cpp: a build without liburing (the epoll
// back-end only) compiles this header too.
struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;

namespace lifeline::runtime {

class LoopObject;

class IoRing {
public:
    // The ring starts disabled: enable() on the thread that will drive it
    // (the kernel then lets only that thread submit and reap:
    // IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN).
    static Result<std::unique_ptr<IoRing>> create(int epoll_fd);
    ~IoRing();
    IoRing(const IoRing&) = delete;
    IoRing& operator=(const IoRing&) = delete;

    Result<void> enable();

    // Queued until the next wait(); completions go to `owner`.
    void receive(int fd, LoopObject& owner);
    void send(int fd, std::span<const std::uint8_t> bytes, LoopObject& owner);
    // Asks the kernel to end `owner`'s armed receive: it completes (without
    // IORING_CQE_F_MORE) with -ECANCELED, or with whatever it was finishing.
    // The cancellation's own completion is consumed here.
    void cancel_receive(LoopObject& owner);
    // Hands what is queued to the kernel now, without waiting.
    void submit();
    // Submits what is queued, then waits until `wanted` completions are
    // ready or `timeout` passes (zero: do not wait; negative: no limit).
    Result<void> wait(Duration timeout, unsigned wanted = 1);
    // Dispatches up to `limit` ready completions; sets `epoll_ready` to
    // whether the epoll set became readable meanwhile. Returns how many
    // completions went to their owners.
    int dispatch(int limit, bool& epoll_ready);

private:
    IoRing() = default;
    io_uring_sqe* next_sqe();
    void arm_epoll_poll();
    void give_back(unsigned buffer_id);
    bool more_deferred(int reaped_since_enter) const;

    std::unique_ptr<io_uring> ring_;
    bool ring_ready_ = false;
    int epoll_fd_ = -1;
    io_uring_buf_ring* buffer_ring_ = nullptr;
    std::size_t buffer_ring_bytes_ = 0;
    std::vector<std::uint8_t> buffers_;
};

}  // namespace lifeline::runtime
