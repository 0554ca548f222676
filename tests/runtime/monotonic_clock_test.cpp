#include "runtime/monotonic_clock.hpp"

#include <gtest/gtest.h>
#include <time.h>

namespace lifeline {
namespace {

TEST(MonotonicClock, NeverGoesBackAndTracksTheKernelClock) {
    MonotonicClock clock;
    Instant prev = clock.now();
    for (int i = 0; i < 1000; ++i) {
        const Instant t = clock.now();
        EXPECT_GE(t, prev);
        prev = t;
    }
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    const Instant kernel = Instant::from_ns(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
    EXPECT_LE(kernel - prev, Duration::seconds(1));
    EXPECT_GE(kernel, prev);
}

}  // namespace
}  // namespace lifeline
