#include "lifeline/time.hpp"

#include <gtest/gtest.h>

#include "core/clock.hpp"

namespace lifeline {
namespace {

TEST(Duration, ConstructorsAndUnits) {
    EXPECT_EQ(Duration::seconds(2).ms(), 2000);
    EXPECT_EQ(Duration::milliseconds(1500).us(), 1'500'000);
    EXPECT_EQ(Duration::hours(24), Duration::minutes(24 * 60));
    EXPECT_EQ(Duration::from_chrono(std::chrono::milliseconds(250)), Duration::milliseconds(250));
}

TEST(Duration, ArithmeticSaturatesInsteadOfOverflowing) {
    const Duration inf = Duration::infinite();
    EXPECT_EQ(inf + Duration::seconds(1), inf);
    EXPECT_EQ(Duration::hours(1) * INT64_MAX, inf);
    EXPECT_TRUE((Duration::seconds(5) * 3).ns() == 15'000'000'000);
    EXPECT_LT(Duration::zero() - inf, Duration::zero());
}

TEST(Instant, UnsetAndNeverAreExplicit) {
    Instant t;
    EXPECT_FALSE(t.is_set());
    EXPECT_TRUE(Instant::from_ns(0).is_set());
    EXPECT_TRUE((Instant::from_ns(5) + Duration::infinite()).is_never());
    EXPECT_LT(Instant::from_ns(INT64_MAX - 1), Instant::never());
    EXPECT_EQ(Instant::from_ns(10) - Instant::from_ns(4), Duration::nanoseconds(6));
    EXPECT_EQ(earliest(Instant::from_ns(3), Instant::never()), Instant::from_ns(3));
}

TEST(Duration, HumanReadable) {
    EXPECT_EQ(to_string(Duration::milliseconds(1500)), "1.5s");
    EXPECT_EQ(to_string(Duration::milliseconds(250)), "250ms");
    EXPECT_EQ(to_string(Duration::hours(2)), "2h");
    EXPECT_EQ(to_string(Duration::minutes(3)), "3m");
    EXPECT_EQ(to_string(Duration::seconds(90)), "90s");
    EXPECT_EQ(to_string(Duration::infinite()), "inf");
    EXPECT_EQ(to_string(Duration::nanoseconds(42)), "42ns");
}

TEST(Duration, ParsesUnitsAndRejectsJunkWithAClearError) {
    EXPECT_EQ(*parse_duration("250ms"), Duration::milliseconds(250));
    EXPECT_EQ(*parse_duration("1.5s"), Duration::milliseconds(1500));
    EXPECT_EQ(*parse_duration("2h"), Duration::hours(2));
    EXPECT_EQ(*parse_duration("3m"), Duration::minutes(3));
    EXPECT_EQ(*parse_duration("10us"), Duration::microseconds(10));
    EXPECT_EQ(*parse_duration("0"), Duration::zero());
    for (const char* junk : {"", "s", "10", "10x", "-1s", "1.2.3s", "1e3s", "99999999999h"}) {
        const Result<Duration> r = parse_duration(junk);
        ASSERT_FALSE(r.ok()) << junk;
        EXPECT_NE(r.error().message.find("invalid duration"), std::string::npos);
    }
    EXPECT_NE(parse_duration("10").error().message.find("missing unit"), std::string::npos);
}

TEST(Duration, ForPeople) {
    EXPECT_EQ(to_human(Duration::seconds(7875)), "2h11m15s");
    EXPECT_EQ(to_human(Duration::milliseconds(924'600)), "15m24.6s");
    EXPECT_EQ(to_human(Duration::seconds(127)), "2m7s");
    EXPECT_EQ(to_human(Duration::hours(2)), "2h");
    EXPECT_EQ(to_human(Duration::milliseconds(250)), "250ms");
    EXPECT_EQ(to_human(Duration::infinite()), "never");
}

TEST(ManualClock, MovesOnlyWhenTold) {
    ManualClock clock(Instant::from_ns(100));
    EXPECT_EQ(clock.now(), Instant::from_ns(100));
    clock.advance(Duration::nanoseconds(50));
    EXPECT_EQ(clock.now(), Instant::from_ns(150));
    clock.advance_to(Instant::from_ns(200));
    EXPECT_EQ(clock.now(), Instant::from_ns(200));
}

}  // namespace
}  // namespace lifeline
