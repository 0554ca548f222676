// One epoll event loop per thread, shared nothing. It owns a TimingWheel and
// sleeps exactly until the wheel's next expiry; an eventfd lets other threads
// post work. Internal to src/runtime.
//
// With `use_io_uring`, connection sockets (StreamSocket) go through an IoRing
// instead of epoll, and the loop waits in io_uring_enter, which also watches
// the epoll set (listeners, the wake-up fd): one system call per turn for
// every connection's receives and sends.
//
// A turn: epoll_wait (or the ring's enter) -> read the clock once -> measure
// how late we woke (loop lag) -> if the loop itself was stalled, tell the
// owner before anything else (the stall guard) -> dispatch I/O (bounded per
// turn) -> ring loops: send the replies that I/O produced (submitted at once
// if timers are due, so they do not wait behind them) -> run posted tasks ->
// fire due timers (bounded per turn) -> ring loops: queue what the timers
// sent, for the next enter. `now()` is the instant read at the top of the turn.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "lifeline/engine/timing_wheel.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"
#include "runtime/monotonic_clock.hpp"

namespace lifeline::runtime {

class IoRing;

enum class RingOp : std::uint8_t { receive = 1, send = 2 };

// An io_uring completion for a LoopObject's socket (io_uring loops only).
struct RingCompletion {
    RingOp op;
    int result;                           // Bytes, 0 (end of stream on receive), or -errno.
    bool more;                            // A multishot receive stays armed.
    std::span<const std::uint8_t> bytes;  // receive: what arrived (valid during on_ring only).
};

// Anything the loop drives: readiness on its fd and its one timer. The timer
// node is the object itself, so an expired node maps back to its owner with a
// static_cast and costs no extra pointer. Cancel the timer before destroying.
class LoopObject : public TimerNode {
public:
    virtual ~LoopObject() = default;
    virtual void on_io(std::uint32_t epoll_events) = 0;
    virtual void on_timer() = 0;
    // io_uring loops: one of this object's socket operations completed. The
    // object may end itself here (nothing touches it afterwards).
    virtual void on_ring(const RingCompletion&) {}
    // io_uring loops: the end of the turn in which this object asked for
    // flush_at_end_of_turn(). The object may end itself here too.
    virtual void on_ring_flush() {}
};

struct EventLoopConfig {
    // Below 1 ms the loop waits with epoll_pwait2 (nanoseconds) instead of
    // epoll_wait (milliseconds), so timers fire within a tick of their deadline.
    Duration tick = Duration::milliseconds(10);
    int max_events_per_turn = 1024;
    // Timers fired per turn; the rest wait one turn so I/O is serviced between
    // batches (10,000 handshake deadlines expiring together must not starve the
    // healthy connections' PINGs).
    int max_timers_per_turn = 512;
    // And at most this much time per turn: a timer that closes a connection
    // (an event line, a CLOSE frame, a shutdown) costs ~50 us in a release
    // build and ten times that under ASan, so 512 of them could hold a live
    // peer's PONG for 300 ms. Past the budget, the rest wait a turn too.
    Duration timer_budget_per_turn = Duration::milliseconds(2);
    // A wake-up later than this past its deadline means the loop (or the whole
    // process, or the machine) was stalled: silence that accrued meanwhile is
    // not the peers' fault.
    Duration stall_threshold = Duration::milliseconds(250);
    // Serve StreamSockets through io_uring (see above). create() fails with
    // the kernel's reason where io_uring is missing or disabled.
    bool use_io_uring = false;
    // Wake-up coalescing (0: off). While wake-ups come less than this apart
    // on average and each finds a few events ready (2 to 15: I/O arriving
    // faster than the loop sleeps and wakes), the loop lets this long pass
    // from the start of one wake-up to the next wait, so one wake-up serves
    // what arrived meanwhile instead of one or two events.
    // A wake-up (the context switch, the wait, the scheduler's and the
    // sockets' wake paths) costs more than a heartbeat's receive and reply;
    // with independently phased peers each wake-up otherwise serves about
    // two. It adds at most this much latency, and only while busy: a loop
    // woken for a single event keeps waking at once. Timers still fire on
    // time (the pause never passes the wheel's next expiry).
    Duration coalesce = Duration::zero();
};

class EventLoop {
public:
    static Result<std::unique_ptr<EventLoop>> create(const EventLoopConfig& config);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Loop thread only.
    Result<void> add(int fd, std::uint32_t events, LoopObject* handler);
    Result<void> modify(int fd, std::uint32_t events, LoopObject* handler);
    void remove(int fd);  // Before close(fd); errors are ignored because the fd is going anyway.
    // The io_uring half, or nullptr on an epoll-only loop.
    IoRing* ring() { return ring_.get(); }
    // io_uring loops: call `object.on_ring_flush()` once this turn's work is
    // done (so a turn's output to one peer leaves as one send).
    void flush_at_end_of_turn(LoopObject& object) { flush_list_.push_back(&object); }

    // The object's on_timer() runs at the first tick at or after `deadline`.
    void schedule(LoopObject& object, Instant deadline) { wheel_.schedule(object, deadline); }
    void cancel(LoopObject& object) { wheel_.cancel(object); }
    Instant now() const { return now_; }
    // Turns run so far (a socket tells a send stuck for turns from one in flight).
    std::uint64_t turns() const { return turns_; }
    // The clock read now, not at the top of the turn (for measuring).
    Instant precise_now() const { return clock_.now(); }
    // Called when the loop woke `lag` late, or a turn took `lag` (>= stall_threshold).
    void set_stall_callback(std::function<void(Duration lag)> callback) { on_stall_ = std::move(callback); }

    // Runs until stop(). Loop thread only (the thread that calls it becomes it).
    void run();
    // Thread-safe. The loop finishes its current turn and run() returns.
    void stop();
    // Thread-safe: runs `task` on the loop thread at its next turn.
    void post(std::function<void()> task);

    // Loop lag: how late the last turn woke versus its deadline, and the worst seen.
    Duration last_lag() const { return Duration::nanoseconds(last_lag_ns_.load(std::memory_order_relaxed)); }
    Duration max_lag() const { return Duration::nanoseconds(max_lag_ns_.load(std::memory_order_relaxed)); }
    std::uint64_t stalls() const { return stalls_.load(std::memory_order_relaxed); }

private:
    EventLoop(const EventLoopConfig& config, int epoll_fd, int wake_fd);
    void run_turn();
    // Wake-up coalescing: sleeps out the rest of the window when busy.
    void coalesce_wake_ups(Instant deadline);
    // Waits (epoll_wait, or the ring's enter) and dispatches I/O; returns the deadline waited for.
    void wait_and_dispatch(Instant deadline);
    Result<void> wait_in_ring(Instant deadline);
    int epoll_wait(int timeout_ms);
    // Waits until `deadline`, to the nanosecond when the tick is below a millisecond.
    int epoll_wait_until(Instant deadline);
    // Reads the clock after a wait; reports a stall before any I/O is dispatched.
    void woke(Instant deadline);
    void dispatch_epoll(int ready);
    void flush_ring_output();
    void send_replies_now();
    void run_posted();
    void fire_due_timers();
    // Milliseconds until `next` (the wheel's next expiry), rounded up; -1 for never.
    int timeout_ms(Instant next) const;

    EventLoopConfig config_;
    int epoll_fd_;
    int wake_fd_;
    MonotonicClock clock_;
    Instant now_;
    TimingWheel wheel_;
    std::function<void(Duration)> on_stall_;
    std::vector<epoll_event> events_;
    std::unique_ptr<IoRing> ring_;
    std::vector<LoopObject*> flush_list_;
    std::vector<LoopObject*> flushing_;
    // Ring loops: the epoll set may still hold ready (level-triggered) fds
    // after a full batch, which its poll would not report again.
    bool epoll_maybe_ready_ = false;
    std::uint64_t turns_ = 0;
    // Events the last wake-up found ready (epoll events and ring completions),
    // and the average time between the starts of wake-ups (coalescing).
    int last_ready_ = 0;
    std::int64_t mean_wake_interval_ns_ = 0;
    std::atomic<bool> stopping_{false};
    std::mutex posted_mutex_;
    std::vector<std::function<void()>> posted_;
    std::atomic<std::int64_t> last_lag_ns_{0};
    std::atomic<std::int64_t> max_lag_ns_{0};
    std::atomic<std::uint64_t> stalls_{0};
};

}  // namespace lifeline::runtime
