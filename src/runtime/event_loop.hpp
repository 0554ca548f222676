// One epoll event loop per thread, shared nothing. It owns a TimingWheel and
// sleeps exactly until the wheel's next expiry; an eventfd lets other threads
// post work. Internal to src/runtime.
//
// A turn: epoll_wait -> read the clock once -> measure how late we woke (loop
// lag) -> if the loop itself was stalled, tell the owner before anything else
// (the stall guard) -> dispatch I/O (bounded per turn) -> run posted tasks ->
// fire due timers. `now()` is the instant read at the top of the turn.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/timing_wheel.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"
#include "runtime/monotonic_clock.hpp"

namespace lifeline::runtime {

// Anything the loop drives: readiness on its fd and its one timer. The timer
// node is the object itself, so an expired node maps back to its owner with a
// static_cast and costs no extra pointer. Cancel the timer before destroying.
class LoopObject : public TimerNode {
public:
    virtual ~LoopObject() = default;
    virtual void on_io(std::uint32_t epoll_events) = 0;
    virtual void on_timer() = 0;
};

struct EventLoopConfig {
    Duration tick = Duration::milliseconds(10);
    int max_events_per_turn = 1024;
    // Timers fired per turn; the rest wait one turn so I/O is serviced between
    // batches (10,000 handshake deadlines expiring together must not starve the
    // healthy connections' PINGs).
    int max_timers_per_turn = 512;
    // A wake-up later than this past its deadline means the loop (or the whole
    // process, or the machine) was stalled: silence that accrued meanwhile is
    // not the peers' fault.
    Duration stall_threshold = Duration::milliseconds(250);
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

    // The object's on_timer() runs at the first tick at or after `deadline`.
    void schedule(LoopObject& object, Instant deadline) { wheel_.schedule(object, deadline); }
    void cancel(LoopObject& object) { wheel_.cancel(object); }
    Instant now() const { return now_; }
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
    void run_posted();
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
    std::atomic<bool> stopping_{false};
    std::mutex posted_mutex_;
    std::vector<std::function<void()>> posted_;
    std::atomic<std::int64_t> last_lag_ns_{0};
    std::atomic<std::int64_t> max_lag_ns_{0};
    std::atomic<std::uint64_t> stalls_{0};
};

}  // namespace lifeline::runtime
