// Wake-up coalescing (EventLoopConfig::coalesce): while wake-ups come less
// than a window apart on average, one that found a few events ready makes
// the next wait start a window later; one that found a single event, or
// many, does not, nor does any once wake-ups come further apart; and a pause
// never delays a timer.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "runtime/event_loop.hpp"

namespace lifeline::runtime {
namespace {

std::unique_ptr<EventLoop> make_loop(Duration coalesce) {
    EventLoopConfig config;
    config.tick = Duration::milliseconds(1);
    config.coalesce = coalesce;
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(config);
    EXPECT_TRUE(loop.ok()) << loop.error().message;
    return std::move(*loop);
}

void signal(int fd) {
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(fd, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
}

// An eventfd on the loop: each readiness is consumed and its time recorded;
// it may signal another, or stop the loop.
struct Signal final : LoopObject {
    explicit Signal(EventLoop& l) : loop(l), fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        EXPECT_GE(fd, 0);
        EXPECT_TRUE(loop.add(fd, EPOLLIN, this).ok());
    }
    ~Signal() override {
        loop.remove(fd);
        ::close(fd);
    }
    void on_io(std::uint32_t) override {
        std::uint64_t counter = 0;
        [[maybe_unused]] const ssize_t r = ::read(fd, &counter, sizeof(counter));
        seen_at.push_back(loop.precise_now());
        if (next != nullptr) signal(next->fd);
        if (stops) loop.stop();
    }
    void on_timer() override {
        timer_at = loop.precise_now();
        loop.stop();
    }
    EventLoop& loop;
    int fd;
    Signal* next = nullptr;
    bool stops = false;
    std::vector<Instant> seen_at;
    Instant timer_at;
};

TEST(EventLoopCoalesce, IsOffUnlessAsked) { EXPECT_EQ(EventLoopConfig{}.coalesce, Duration::zero()); }

TEST(EventLoopCoalesce, AfterAWakeUpForTwoEventsTheNextWaitStartsAWindowLater) {
    const Duration window = Duration::milliseconds(200);
    auto loop = make_loop(window);
    Signal a(*loop), b(*loop), late(*loop);
    a.next = &late;  // Ready during the first turn, so seen no sooner than the window allows.
    late.stops = true;
    signal(a.fd);
    signal(b.fd);
    loop->run();
    ASSERT_EQ(a.seen_at.size(), 1u);
    ASSERT_EQ(b.seen_at.size(), 1u);
    ASSERT_EQ(late.seen_at.size(), 1u);
    // The window runs from the top of the first turn, which read the clock
    // before dispatching a.
    EXPECT_GE(late.seen_at[0] - a.seen_at[0], window - Duration::milliseconds(1));
}

TEST(EventLoopCoalesce, AfterAWakeUpForOneEventTheLoopWaitsAtOnce) {
    auto loop = make_loop(Duration::seconds(30));
    Signal a(*loop), late(*loop);
    a.next = &late;
    late.stops = true;
    signal(a.fd);
    loop->run();
    ASSERT_EQ(late.seen_at.size(), 1u);
    // A pause would take 30 s: only starvation crosses this bound otherwise.
    EXPECT_LT(late.seen_at[0] - a.seen_at[0], Duration::seconds(10));
}

TEST(EventLoopCoalesce, AfterAWakeUpForManyEventsTheLoopWaitsAtOnce) {
    auto loop = make_loop(Duration::seconds(30));
    std::vector<std::unique_ptr<Signal>> many;
    for (int i = 0; i < 16; ++i) many.push_back(std::make_unique<Signal>(*loop));
    Signal late(*loop);
    many[0]->next = &late;
    late.stops = true;
    for (auto& s : many) signal(s->fd);
    loop->run();
    ASSERT_EQ(late.seen_at.size(), 1u);
    EXPECT_LT(late.seen_at[0] - many[0]->seen_at[0], Duration::seconds(10));  // Not the 30 s window.
}

TEST(EventLoopCoalesce, WakeUpsFurtherApartThanTheWindowOnAverageDoNotPause) {
    // Bursts: holding the rest of a burst back would send all its replies in
    // one run after the peers went back to sleep. One wait of 8.1 s moves the
    // average (over about 8 wake-ups) past the 1 s window.
    const Duration window = Duration::seconds(1);
    auto loop = make_loop(window);
    Signal a(*loop), b(*loop), late(*loop);
    a.next = &late;
    late.stops = true;
    // Not synchronisation: the gap must only be at least a window long.
    std::thread burst([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(8100));
        signal(a.fd);
        signal(b.fd);
    });
    loop->run();
    burst.join();
    ASSERT_EQ(late.seen_at.size(), 1u);
    EXPECT_LT(late.seen_at[0] - a.seen_at[0], Duration::milliseconds(900));  // A pause would be 1 s.
}

TEST(EventLoopCoalesce, APauseEndsAtTheNextTimer) {
    auto loop = make_loop(Duration::seconds(30));
    Signal a(*loop), b(*loop);
    const Instant deadline = loop->precise_now() + Duration::milliseconds(50);
    loop->schedule(a, deadline);
    signal(a.fd);
    signal(b.fd);
    loop->run();  // Stopped by a's timer.
    ASSERT_TRUE(a.timer_at.is_set());
    EXPECT_GE(a.timer_at, deadline);
    EXPECT_LT(a.timer_at - deadline, Duration::seconds(10));  // Not the 30 s window.
}

}  // namespace
}  // namespace lifeline::runtime
