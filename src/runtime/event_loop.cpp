#include "runtime/event_loop.hpp"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "runtime/io_ring.hpp"

namespace lifeline::runtime {

Result<std::unique_ptr<EventLoop>> EventLoop::create(const EventLoopConfig& config) {
    const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) return system_error("epoll_create1", errno);
    const int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) {
        const int e = errno;
        ::close(epoll_fd);
        return system_error("eventfd", e);
    }
    std::unique_ptr<EventLoop> loop(new EventLoop(config, epoll_fd, wake_fd));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // nullptr marks the wake-up fd.
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0) return system_error("epoll_ctl(ADD eventfd)", errno);
    if (config.use_io_uring) {
        Result<std::unique_ptr<IoRing>> ring = IoRing::create(epoll_fd);
        if (!ring) return ring.error();
        loop->ring_ = std::move(*ring);
    }
    return loop;
}

EventLoop::EventLoop(const EventLoopConfig& config, int epoll_fd, int wake_fd)
    : config_(config),
      epoll_fd_(epoll_fd),
      wake_fd_(wake_fd),
      now_(clock_.now()),
      wheel_(now_, {config.tick}),
      events_(static_cast<std::size_t>(config.max_events_per_turn)) {}

EventLoop::~EventLoop() {
    ::close(wake_fd_);
    ::close(epoll_fd_);
}

Result<void> EventLoop::add(int fd, std::uint32_t events, LoopObject* handler) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = handler;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0)
        return system_error("epoll_ctl(ADD, fd " + std::to_string(fd) + ")", errno);
    return {};
}

Result<void> EventLoop::modify(int fd, std::uint32_t events, LoopObject* handler) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = handler;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0)
        return system_error("epoll_ctl(MOD, fd " + std::to_string(fd) + ")", errno);
    return {};
}

void EventLoop::remove(int fd) {
    // Ignored on purpose: DEL fails only for an fd that is not (or no longer)
    // registered, and then nothing watches it, which is what was asked.
    [[maybe_unused]] const int r = ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::stop() {
    stopping_.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    // A full eventfd counter (EAGAIN) already guarantees a wake-up.
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void EventLoop::post(std::function<void()> task) {
    {
        std::lock_guard lock(posted_mutex_);
        posted_.push_back(std::move(task));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

int EventLoop::timeout_ms(Instant next) const {
    if (next.is_never()) return -1;
    const Duration wait = next - clock_.now();
    if (wait <= Duration::zero()) return 0;
    // Round up: waking a little late costs less than a busy turn that finds nothing due.
    return static_cast<int>(std::min<std::int64_t>((wait.ns() + 999'999) / 1'000'000, INT_MAX));
}

void EventLoop::run() {
    if (ring_) {
        // Only fails for a ring that is not the disabled one create() made.
        if (auto r = ring_->enable(); !r) {
            std::fprintf(stderr, "lifeline: %s\n", r.error().message.c_str());
            std::abort();
        }
        // Output queued before run() (a turn's output leaves at its end) must
        // not wait for the first wake-up.
        flush_ring_output();
    }
    while (!stopping_.load(std::memory_order_acquire)) run_turn();
    run_posted();  // Work posted before stop() (e.g. a shutdown step) still runs.
}

void EventLoop::woke(Instant deadline) {
    const Instant previous_wake = now_;
    now_ = clock_.now();
    // A moving average over about the last 8 wake-ups.
    mean_wake_interval_ns_ += ((now_ - previous_wake).ns() - mean_wake_interval_ns_) / 8;
    // Lag only counts when we slept past a deadline we meant to keep.
    const Duration lag = deadline.is_never() || now_ <= deadline ? Duration::zero() : now_ - deadline;
    last_lag_ns_.store(lag.ns(), std::memory_order_relaxed);
    if (lag.ns() > max_lag_ns_.load(std::memory_order_relaxed)) max_lag_ns_.store(lag.ns(), std::memory_order_relaxed);
    if (lag >= config_.stall_threshold) {
        stalls_.fetch_add(1, std::memory_order_relaxed);
        if (on_stall_) on_stall_(lag);
    }
}

void EventLoop::dispatch_epoll(int n) {
    last_ready_ += n;
    for (int i = 0; i < n; ++i) {
        auto* handler = static_cast<LoopObject*>(events_[static_cast<std::size_t>(i)].data.ptr);
        if (handler == nullptr) {
            std::uint64_t counter = 0;
            // Ignored on purpose: EAGAIN means another turn already reset the counter.
            [[maybe_unused]] const ssize_t r = ::read(wake_fd_, &counter, sizeof(counter));
            continue;
        }
        handler->on_io(events_[static_cast<std::size_t>(i)].events);
    }
}

int EventLoop::epoll_wait(int timeout) {
    const int n = ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()), timeout);
    return n < 0 ? 0 : n;  // EINTR: nothing this turn.
}

int EventLoop::epoll_wait_until(Instant deadline) {
    // epoll_wait's millisecond timeout would round a sub-millisecond tick up
    // to a whole millisecond; epoll_pwait2 (Linux 5.11) takes nanoseconds.
    // Only loops with such ticks (the load generator's) use it, so a server
    // with the default tick waits exactly as before.
    if (config_.tick >= Duration::milliseconds(1) || deadline.is_never()) return epoll_wait(timeout_ms(deadline));
    const std::int64_t wait_ns = std::max<std::int64_t>(0, (deadline - clock_.now()).ns());
    const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    const int n = ::epoll_pwait2(epoll_fd_, events_.data(), static_cast<int>(events_.size()), &timeout, nullptr);
    return n < 0 ? 0 : n;  // EINTR: nothing this turn.
}

void EventLoop::wait_and_dispatch(Instant deadline) {
    if (!ring_) {
        const int n = epoll_wait_until(deadline);
        woke(deadline);
        last_ready_ = 0;
        dispatch_epoll(n);
        return;
    }
    // Listeners and posted work wake the ring through its poll of the epoll
    // fd; only a batch that may have left (level-triggered) fds ready makes
    // us look at the epoll set again without being told.
    if (auto r = wait_in_ring(deadline); !r) {
        std::fprintf(stderr, "lifeline: %s\n", r.error().message.c_str());
        std::abort();  // EFAULT/EINVAL: a bug, not a condition to ride out.
    }
    woke(deadline);
    bool epoll_ready = false;
    last_ready_ = ring_->dispatch(config_.max_events_per_turn * 4, epoll_ready);
    if (epoll_ready || epoll_maybe_ready_) {
        const int n = epoll_wait(0);
        epoll_maybe_ready_ = n > 0;
        dispatch_epoll(n);
    }
}

Result<void> EventLoop::wait_in_ring(Instant deadline) {
    if (epoll_maybe_ready_) return ring_->wait(Duration::zero());
    const Duration until_deadline = deadline.is_never() ? Duration::nanoseconds(-1) : deadline - clock_.now();
    if (!deadline.is_never() && until_deadline <= Duration::zero()) return ring_->wait(Duration::zero());
    return ring_->wait(until_deadline);
}

void EventLoop::coalesce_wake_ups(Instant deadline) {
    // Pause only while wake-ups come often and serve few events each: the
    // case the pause is for. A wake-up that found one event has nothing to
    // share; one that found many already shares its cost. And wake-ups must
    // come less than a window apart on average (not just this once): in a
    // burst, a pause would hold the rest of the burst back, and its replies
    // would then leave in one run after the peers went back to sleep, each
    // waking one (measured: +35 % CPU per heartbeat under burst arrivals on
    // loopback, where the peers' wake-ups are the server's to pay).
    constexpr int kSharedEnough = 16;
    if (config_.coalesce <= Duration::zero() || last_ready_ < 2 || last_ready_ >= kSharedEnough ||
        mean_wake_interval_ns_ >= config_.coalesce.ns())
        return;
    const Instant window_end = now_ + config_.coalesce;  // now_: when the last wake-up began.
    const Instant until = deadline < window_end ? deadline : window_end;
    if (until <= clock_.now()) return;
    // What the last turn queued on the ring leaves now, not after the pause.
    if (ring_) ring_->submit();
    const std::int64_t ns = until.ns_since_epoch();
    const timespec at{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    // EINTR: a signal cut the pause short, which only means an earlier wait.
    ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr);
}

void EventLoop::run_turn() {
    ++turns_;
    const Instant deadline = wheel_.next_expiry();
    coalesce_wake_ups(deadline);
    wait_and_dispatch(deadline);
    if (ring_) send_replies_now();
    run_posted();
    fire_due_timers();
    flush_ring_output();
    // A turn that itself ran long (thousands of timers, a slow callback) is a
    // stall too: whatever the peers sent meanwhile is still unread.
    const Duration busy = clock_.now() - now_;
    if (busy >= config_.stall_threshold) {
        stalls_.fetch_add(1, std::memory_order_relaxed);
        now_ = clock_.now();
        if (on_stall_) on_stall_(busy);
    }
}

void EventLoop::fire_due_timers() {
    // Bounded by count and by time; the clock is read every few timers (a
    // vDSO call, but 10,000 of them are still not free). What is left stays
    // due and fires first at the next turn, after that turn's I/O.
    constexpr int kTimersPerClockRead = 8;
    const Instant budget_end = now_ + config_.timer_budget_per_turn;
    int fired = 0;
    wheel_.advance_while(
        now_,
        [&](TimerNode& node) {
            ++fired;
            static_cast<LoopObject&>(node).on_timer();
        },
        [&] {
            if (fired >= config_.max_timers_per_turn) return false;
            return fired % kTimersPerClockRead != 0 || clock_.now() < budget_end;
        });
}

void EventLoop::send_replies_now() {
    // What this turn's input produced (PONGs, echoes) leaves before its
    // timers run: a turn that closes 512 expired connections must not hold
    // back every live peer's reply until it is done.
    if (flush_list_.empty()) return;
    flush_ring_output();
    if (wheel_.next_expiry() <= now_) ring_->submit();  // Else the next wait, right away, submits them.
}

void EventLoop::flush_ring_output() {
    flushing_.swap(flush_list_);
    for (LoopObject* object : flushing_) object->on_ring_flush();
    flushing_.clear();
}

void EventLoop::run_posted() {
    std::vector<std::function<void()>> tasks;
    {
        std::lock_guard lock(posted_mutex_);
        tasks.swap(posted_);
    }
    for (auto& task : tasks) task();
}

}  // namespace lifeline::runtime
