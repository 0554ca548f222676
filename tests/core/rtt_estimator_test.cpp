#include "lifeline/engine/rtt_estimator.hpp"

#include <gtest/gtest.h>

namespace lifeline {
namespace {

TEST(RttEstimator, FirstSampleSetsSmoothedAndHalfVariance) {
    RttEstimator rtt;
    EXPECT_FALSE(rtt.has_sample());
    rtt.on_sample(Duration::milliseconds(100));
    EXPECT_TRUE(rtt.has_sample());
    EXPECT_EQ(rtt.smoothed(), Duration::milliseconds(100));
    EXPECT_EQ(rtt.variance(), Duration::milliseconds(50));
    EXPECT_EQ(rtt.min(), Duration::milliseconds(100));
}

TEST(RttEstimator, FollowsRfc6298Update) {
    RttEstimator rtt;
    rtt.on_sample(Duration::milliseconds(100));
    rtt.on_sample(Duration::milliseconds(200));
    // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5 ms; SRTT = 7/8 * 100 + 1/8 * 200 = 112.5 ms.
    EXPECT_EQ(rtt.variance(), Duration::microseconds(62'500));
    EXPECT_EQ(rtt.smoothed(), Duration::microseconds(112'500));
    EXPECT_EQ(rtt.min(), Duration::milliseconds(100));
    // RTO = SRTT + max(G, 4 * RTTVAR) = 112.5 + 250 ms.
    EXPECT_EQ(rtt.retransmission_timeout(Duration::milliseconds(10)), Duration::microseconds(362'500));
    EXPECT_TRUE(rtt.has_sample());
}

TEST(RttEstimator, ConvergesOnAStablePath) {
    RttEstimator rtt;
    rtt.on_sample(Duration::milliseconds(500));
    for (int i = 0; i < 200; ++i) rtt.on_sample(Duration::milliseconds(20));
    EXPECT_LE(rtt.smoothed() - Duration::milliseconds(20), Duration::microseconds(10));
    EXPECT_LE(rtt.variance(), Duration::microseconds(10));
    EXPECT_EQ(rtt.min(), Duration::milliseconds(20));
}

TEST(RttEstimator, ClampsAbsurdSamplesInsteadOfOverflowing) {
    RttEstimator rtt;
    rtt.on_sample(Duration::hours(100));
    EXPECT_EQ(rtt.smoothed(), Duration::microseconds(UINT32_MAX - 1));
    rtt.on_sample(Duration::nanoseconds(-5));
    EXPECT_EQ(rtt.min(), Duration::zero());
}

}  // namespace
}  // namespace lifeline
