#include "core/timing_wheel.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <vector>

namespace lifeline {
namespace {

constexpr Duration kTick = Duration::milliseconds(10);
const Instant kStart = Instant::from_ns(1'000'000'000);

Instant at(Duration d) { return kStart + d; }

struct Fired {
    std::vector<const TimerNode*> nodes;
    auto recorder() {
        return [this](TimerNode& n) { nodes.push_back(&n); };
    }
};

TEST(TimingWheel, FiresAtDeadlineRoundedUpToTickNeverEarly) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode node;
    wheel.schedule(node, at(Duration::milliseconds(25)));  // Rounds up to the 30 ms tick.
    Fired fired;
    EXPECT_EQ(wheel.advance(at(Duration::milliseconds(25)), fired.recorder()), 0u);
    EXPECT_EQ(wheel.advance(at(Duration::milliseconds(29)), fired.recorder()), 0u);
    EXPECT_TRUE(node.armed());
    EXPECT_EQ(wheel.advance(at(Duration::milliseconds(30)), fired.recorder()), 1u);
    ASSERT_EQ(fired.nodes.size(), 1u);
    EXPECT_EQ(fired.nodes[0], &node);
    EXPECT_FALSE(node.armed());
    EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimingWheel, FiresInDeadlineOrderAcrossLevels) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode a, b, c, d;
    wheel.schedule(c, at(Duration::hours(2)));
    wheel.schedule(a, at(Duration::milliseconds(50)));
    wheel.schedule(d, at(Duration::hours(30)));
    wheel.schedule(b, at(Duration::seconds(7)));
    Fired fired;
    EXPECT_EQ(wheel.advance(at(Duration::hours(31)), fired.recorder()), 4u);
    EXPECT_EQ(fired.nodes, (std::vector<const TimerNode*>{&a, &b, &c, &d}));
}

TEST(TimingWheel, CancelDisarmsAndIsIdempotent) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode a, b;
    wheel.schedule(a, at(Duration::seconds(1)));
    wheel.schedule(b, at(Duration::seconds(1)));
    wheel.cancel(a);
    wheel.cancel(a);
    EXPECT_FALSE(a.armed());
    EXPECT_EQ(wheel.size(), 1u);
    Fired fired;
    wheel.advance(at(Duration::seconds(2)), fired.recorder());
    EXPECT_EQ(fired.nodes, (std::vector<const TimerNode*>{&b}));
}

TEST(TimingWheel, RescheduleMovesTheDeadline) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode node;
    wheel.schedule(node, at(Duration::seconds(1)));
    wheel.schedule(node, at(Duration::seconds(5)));
    EXPECT_EQ(wheel.size(), 1u);
    Fired fired;
    EXPECT_EQ(wheel.advance(at(Duration::seconds(4)), fired.recorder()), 0u);
    EXPECT_EQ(wheel.advance(at(Duration::seconds(5)), fired.recorder()), 1u);
}

TEST(TimingWheel, PastDeadlineFiresOnNextAdvance) {
    TimingWheel wheel(kStart, {kTick});
    Fired fired;
    wheel.advance(at(Duration::seconds(10)), fired.recorder());
    TimerNode node;
    wheel.schedule(node, at(Duration::seconds(3)));
    EXPECT_EQ(wheel.next_expiry(), wheel.current_time());
    EXPECT_EQ(wheel.advance(at(Duration::seconds(10)), fired.recorder()), 1u);
}

TEST(TimingWheel, CallbackMayCancelAnotherCollectedTimer) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode first, second;
    wheel.schedule(first, at(Duration::milliseconds(10)));
    wheel.schedule(second, at(Duration::milliseconds(20)));
    std::vector<TimerNode*> fired;
    wheel.advance(at(Duration::seconds(1)), [&](TimerNode& n) {
        fired.push_back(&n);
        if (&n == &first) wheel.cancel(second);
    });
    EXPECT_EQ(fired, (std::vector<TimerNode*>{&first}));
    EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimingWheel, RearmAtNowInCallbackFiresOnNextAdvanceOnly) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode node;
    wheel.schedule(node, at(Duration::milliseconds(10)));
    int calls = 0;
    auto rearm_now = [&](TimerNode& n) {
        ++calls;
        wheel.schedule(n, at(Duration::milliseconds(10)));
    };
    EXPECT_EQ(wheel.advance(at(Duration::milliseconds(10)), rearm_now), 1u);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(wheel.advance(at(Duration::milliseconds(10)), rearm_now), 1u);
    EXPECT_EQ(calls, 2);
    wheel.cancel(node);
}

TEST(TimingWheel, CallbacksRunAfterCollectionSoAPeriodicTimerFiresOncePerAdvance) {
    TimingWheel wheel(kStart, {kTick});
    TimerNode node;
    wheel.schedule(node, at(Duration::seconds(1)));
    std::vector<Instant> fired_at;
    // A periodic 1 s timer over a 10 s jump fires... once per advance: callbacks
    // run after collection, and the re-armed deadline is beyond current time.
    wheel.advance(at(Duration::seconds(10)), [&](TimerNode& n) {
        fired_at.push_back(wheel.current_time());
        wheel.schedule(n, wheel.current_time() + Duration::seconds(1));
    });
    EXPECT_EQ(fired_at.size(), 1u);
    EXPECT_EQ(wheel.next_expiry(), at(Duration::seconds(11)));
    wheel.cancel(node);
}

TEST(TimingWheel, NextExpiryIsExactOnEveryLevel) {
    for (Duration d : {Duration::milliseconds(10), Duration::milliseconds(2550), Duration::seconds(3),
                       Duration::minutes(11), Duration::hours(24), Duration::hours(24 * 400)}) {
        TimingWheel wheel(kStart, {kTick});
        TimerNode node;
        wheel.schedule(node, at(d));
        EXPECT_EQ(wheel.next_expiry(), at(d)) << to_string(d);
        wheel.cancel(node);
        EXPECT_EQ(wheel.next_expiry(), Instant::never());
    }
}

TEST(TimingWheel, SleepingUntilNextExpiryFiresEachTimerOnTime) {
    // A runtime that sleeps exactly until next_expiry() wakes a bounded number of
    // times and never fires a timer early or more than one tick late.
    TimingWheel wheel(kStart, {kTick});
    std::vector<Duration> offsets = {Duration::milliseconds(15), Duration::seconds(4), Duration::minutes(20),
                                     Duration::hours(25), Duration::hours(24 * 600)};
    std::vector<std::unique_ptr<TimerNode>> nodes;
    for (Duration d : offsets) {
        nodes.push_back(std::make_unique<TimerNode>());
        wheel.schedule(*nodes.back(), at(d));
    }
    int wakeups = 0;
    std::size_t fired = 0;
    while (wheel.size() > 0 && wakeups < 100) {
        const Instant wake = wheel.next_expiry();
        ++wakeups;
        wheel.advance(wake, [&](TimerNode& n) {
            EXPECT_GE(wake, n.deadline());
            EXPECT_LE(wake - n.deadline(), kTick);
            ++fired;
        });
    }
    EXPECT_EQ(fired, offsets.size());
    EXPECT_LE(wakeups, 10);
}

TEST(TimingWheel, CancelledEarliestTimerCausesAtMostOneEarlyWakeup) {
    // Both deadlines share one level-1 slot (ticks 1000 and 1010 of 768..1023).
    TimingWheel wheel(kStart, {kTick});
    TimerNode early, late;
    wheel.schedule(early, at(Duration::seconds(10)));
    wheel.schedule(late, at(Duration::milliseconds(10100)));
    wheel.cancel(early);
    // The slot's minimum is a lower bound kept from the cancelled timer: one early wake-up...
    const Instant first_wake = wheel.next_expiry();
    EXPECT_EQ(first_wake, at(Duration::seconds(10)));
    Fired fired;
    EXPECT_EQ(wheel.advance(first_wake, fired.recorder()), 0u);
    // ...after which the slot has been cascaded and the expiry is exact again.
    EXPECT_EQ(wheel.next_expiry(), at(Duration::milliseconds(10100)));
    wheel.advance(at(Duration::milliseconds(10100)), fired.recorder());
    EXPECT_EQ(fired.nodes, (std::vector<const TimerNode*>{&late}));
}

TEST(TimingWheel, DestroyingTheWheelDisarmsItsNodes) {
    TimerNode node;
    {
        TimingWheel wheel(kStart, {kTick});
        wheel.schedule(node, at(Duration::seconds(1)));
        EXPECT_TRUE(node.armed());
    }
    EXPECT_FALSE(node.armed());
}

// Against a reference model: random schedule / cancel / advance, with deadlines
// from one tick to 50 days, and each advance must fire exactly the timers whose
// rounded-up deadline tick has been reached, in deadline order.
// The comment on each assertion names the seed, so a failure replays.
TEST(TimingWheel, MatchesReferenceModelUnderRandomOperations) {
    for (std::uint32_t seed = 1; seed <= 20; ++seed) {
        std::mt19937_64 rng(seed);
        // With a 1 ms tick, 50 days exceed the wheel's 2^32 ticks: the overflow list is exercised.
        const Duration tick = seed % 2 == 0 ? Duration::milliseconds(1) : kTick;
        TimingWheel wheel(kStart, {tick});
        constexpr int kNodes = 500;
        std::vector<TimerNode> nodes(kNodes);
        std::map<const TimerNode*, Instant> expected;  // armed node -> deadline
        Instant now = kStart;
        auto tick_ceil = [&](Instant t) {
            const std::int64_t ns = (t - kStart).ns();
            return (ns + tick.ns() - 1) / tick.ns();
        };
        for (int step = 0; step < 4000; ++step) {
            const int op = static_cast<int>(rng() % 10);
            TimerNode& node = nodes[rng() % kNodes];
            if (op < 5) {
                // Mostly short deadlines, some long ones that cross levels.
                const std::int64_t scale = rng() % 4 == 0 ? 4'320'000'000'000'000 : 5'000'000'000;
                const Instant deadline = now + Duration::nanoseconds(static_cast<std::int64_t>(rng() % scale));
                wheel.schedule(node, deadline);
                expected[&node] = deadline;
            } else if (op < 7) {
                wheel.cancel(node);
                expected.erase(&node);
            } else {
                const std::int64_t jump = rng() % 3 == 0 ? 100'000'000'000'000 : 3'000'000'000;
                const Instant next = rng() % 4 == 0 ? wheel.next_expiry()
                                                    : now + Duration::nanoseconds(static_cast<std::int64_t>(rng() % jump));
                if (next.is_never() || next < now) continue;
                now = next;
                const std::int64_t now_tick = (now - kStart).ns() / tick.ns();
                std::vector<const TimerNode*> want;
                std::multimap<std::int64_t, const TimerNode*> due;
                for (auto& [n, deadline] : expected) {
                    if (tick_ceil(deadline) <= now_tick) due.emplace(tick_ceil(deadline), n);
                }
                std::vector<std::int64_t> fired_ticks;
                std::size_t count = 0;
                wheel.advance(now, [&](TimerNode& n) {
                    ASSERT_TRUE(expected.count(&n)) << "seed=" << seed << " fired a node that is not armed";
                    fired_ticks.push_back(tick_ceil(expected[&n]));
                    expected.erase(&n);
                    ++count;
                });
                ASSERT_EQ(count, due.size()) << "seed=" << seed << " step=" << step;
                ASSERT_TRUE(std::is_sorted(fired_ticks.begin(), fired_ticks.end())) << "seed=" << seed;
            }
            ASSERT_EQ(wheel.size(), expected.size()) << "seed=" << seed;
            if (!expected.empty()) {
                Instant earliest = Instant::never();
                for (auto& [n, deadline] : expected) earliest = std::min(earliest, deadline);
                // Never later than the earliest deadline (rounded to its tick).
                ASSERT_LE(wheel.next_expiry(), kStart + tick * tick_ceil(earliest)) << "seed=" << seed;
            }
        }
        for (TimerNode& n : nodes) wheel.cancel(n);
    }
}

}  // namespace
}  // namespace lifeline
