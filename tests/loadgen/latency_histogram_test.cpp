// The generator's round-trip histogram: bucket boundaries, quantiles on known
// samples within the stated resolution, window subtraction and the JSON that
// carries it between shards.
#include "loadgen/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace lifeline::loadgen {
namespace {

constexpr double kResolution = 1.0 / 64;  // Half a bucket's width, relative (see the header).

TEST(LatencyHistogram, BucketsTileTheRangeWithoutGapsOrOverlap) {
    for (std::size_t i = 1; i < LatencyHistogram::kBuckets; ++i) {
        const std::int64_t start = LatencyHistogram::bucket_start_ns(i);
        ASSERT_GT(start, LatencyHistogram::bucket_start_ns(i - 1)) << i;
        ASSERT_EQ(LatencyHistogram::bucket_of(start), i) << "the start of bucket " << i;
        ASSERT_EQ(LatencyHistogram::bucket_of(start - 1), i - 1) << "just below bucket " << i;
    }
    EXPECT_EQ(LatencyHistogram::bucket_of(-5), 0u);
    EXPECT_EQ(LatencyHistogram::bucket_of(INT64_MAX), LatencyHistogram::kBuckets - 1);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
    LatencyHistogram h;
    for (std::int64_t v = 1; v <= 50; ++v) h.record_ns(v);
    EXPECT_EQ(h.count(), 50u);
    EXPECT_EQ(h.quantile_ns(0.5), 25);
    EXPECT_EQ(h.quantile_ns(0.0), 1);
    EXPECT_EQ(h.quantile_ns(1.0), 50);
}

TEST(LatencyHistogram, QuantilesOfKnownSamplesAreWithinTheResolution) {
    // 1 us .. 100 ms in 1 us steps: the q-quantile (nearest rank) is q * 100,000 us.
    LatencyHistogram h;
    constexpr std::int64_t kSamples = 100'000;
    for (std::int64_t us = 1; us <= kSamples; ++us) h.record_ns(us * 1000);
    for (const double q : {0.5, 0.9, 0.99, 0.999}) {
        const double exact = std::ceil(q * kSamples) * 1000;
        EXPECT_NEAR(static_cast<double>(h.quantile_ns(q)), exact, exact * kResolution) << "q " << q;
    }
    EXPECT_EQ(h.quantile_ns(1.0), kSamples * 1000) << "the maximum is the largest sample, not a bucket's middle";
}

TEST(LatencyHistogram, ATailOfOnePerMilleShowsInTheP999) {
    LatencyHistogram h;
    for (int i = 0; i < 998; ++i) h.record_ns(50'000);  // 50 us
    h.record_ns(20'000'000);                            // 20 ms
    h.record_ns(20'000'000);
    EXPECT_NEAR(static_cast<double>(h.quantile_ns(0.99)), 50'000, 50'000 * kResolution);
    EXPECT_NEAR(static_cast<double>(h.quantile_ns(0.999)), 20'000'000, 20'000'000 * kResolution);
}

TEST(LatencyHistogram, EmptyReportsZero) {
    const LatencyHistogram h;
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.quantile_ns(0.99), 0);
}

TEST(LatencyHistogram, AWindowIsTheDifferenceOfTwoSnapshots) {
    LatencyHistogram h;
    for (int i = 0; i < 100; ++i) h.record_ns(5'000'000);  // The ramp: 5 ms each.
    const LatencyHistogram at_start = h;
    for (int i = 0; i < 300; ++i) h.record_ns(100'000);  // The hold: 100 us each.
    h.subtract(at_start);
    EXPECT_EQ(h.count(), 300u);
    EXPECT_NEAR(static_cast<double>(h.quantile_ns(0.999)), 100'000, 100'000 * kResolution);
}

TEST(LatencyHistogram, SurvivesJsonAndAddsUp) {
    LatencyHistogram a, b;
    for (int i = 0; i < 10; ++i) a.record_ns(1'000'000);
    for (int i = 0; i < 30; ++i) b.record_ns(3'000'000);
    const Result<LatencyHistogram> back = LatencyHistogram::from_json(nlohmann::json::parse(b.to_json().dump()));
    ASSERT_TRUE(back.ok()) << back.error().message;
    a.add(*back);
    EXPECT_EQ(a.count(), 40u);
    EXPECT_NEAR(static_cast<double>(a.quantile_ns(0.5)), 3'000'000, 3'000'000 * kResolution);
    EXPECT_NEAR(static_cast<double>(a.quantile_ns(0.25)), 1'000'000, 1'000'000 * kResolution);
    EXPECT_FALSE(LatencyHistogram::from_json(nlohmann::json::parse(R"({"buckets":[[99999,1]],"max_ns":1})")).ok());
}

}  // namespace
}  // namespace lifeline::loadgen
