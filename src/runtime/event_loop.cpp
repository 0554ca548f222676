#include "runtime/event_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

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

void EventLoop::remove(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

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
    while (!stopping_.load(std::memory_order_acquire)) run_turn();
    run_posted();  // Work posted before stop() (e.g. a shutdown step) still runs.
}

void EventLoop::run_turn() {
    const Instant deadline = wheel_.next_expiry();
    const int n = ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()), timeout_ms(deadline));
    now_ = clock_.now();
    // Lag only counts when we slept past a deadline we meant to keep.
    const Duration lag = deadline.is_never() || now_ <= deadline ? Duration::zero() : now_ - deadline;
    last_lag_ns_.store(lag.ns(), std::memory_order_relaxed);
    if (lag.ns() > max_lag_ns_.load(std::memory_order_relaxed)) max_lag_ns_.store(lag.ns(), std::memory_order_relaxed);
    if (lag >= config_.stall_threshold) {
        stalls_.fetch_add(1, std::memory_order_relaxed);
        if (on_stall_) on_stall_(lag);
    }
    for (int i = 0; i < n; ++i) {
        auto* handler = static_cast<LoopObject*>(events_[static_cast<std::size_t>(i)].data.ptr);
        if (handler == nullptr) {
            std::uint64_t counter = 0;
            [[maybe_unused]] const ssize_t r = ::read(wake_fd_, &counter, sizeof(counter));
            continue;
        }
        handler->on_io(events_[static_cast<std::size_t>(i)].events);
    }
    run_posted();
    int fired = 0;
    wheel_.advance(now_, [this, &fired](TimerNode& node) {
        if (fired++ < config_.max_timers_per_turn) {
            static_cast<LoopObject&>(node).on_timer();
        } else {
            wheel_.schedule(node, now_);  // Due now: fires at the next turn, after I/O.
        }
    });
    // A turn that itself ran long (thousands of timers, a slow callback) is a
    // stall too: whatever the peers sent meanwhile is still unread.
    const Duration busy = clock_.now() - now_;
    if (busy >= config_.stall_threshold) {
        stalls_.fetch_add(1, std::memory_order_relaxed);
        now_ = clock_.now();
        if (on_stall_) on_stall_(busy);
    }
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
