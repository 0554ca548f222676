// LIFELINE_CHECK holds in release builds too (the test binaries are built
// with NDEBUG in the release preset): a broken invariant aborts with its name.
#include "lifeline/check.hpp"

#include <gtest/gtest.h>

#include "lifeline/engine/timing_wheel.hpp"

namespace lifeline {
namespace {

TEST(InvariantCheckDeathTest, AFailedCheckAbortsNamingTheInvariant) {
    EXPECT_DEATH(LIFELINE_CHECK(1 + 1 == 3, "arithmetic holds"),
                 "invariant failed: arithmetic holds \\(1 \\+ 1 == 3\\) at .*check_test.cpp");
}

TEST(InvariantCheckDeathTest, APassingCheckDoesNothing) { LIFELINE_CHECK(1 + 1 == 2, "arithmetic holds"); }

// A real one: a timer destroyed while the wheel still links it would leave
// the wheel pointing into freed memory.
TEST(InvariantCheckDeathTest, DestroyingAnArmedTimerAborts) {
    EXPECT_DEATH(
        {
            const Instant start = Instant::from_ns(1'000'000'000);
            TimingWheel wheel(start, {Duration::milliseconds(10)});
            auto* node = new TimerNode;
            wheel.schedule(*node, start + Duration::seconds(1));
            delete node;
        },
        "invariant failed: a TimerNode is destroyed while armed");
}

}  // namespace
}  // namespace lifeline
