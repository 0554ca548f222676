#include "lifeline/engine/failure_detector.hpp"

#include <gtest/gtest.h>

#include <random>

namespace lifeline {
namespace {

const Instant t0 = Instant::from_ns(0);

TEST(FixedTimeoutDetector, ConvictsExactlyAfterTimeoutOfSilence) {
    FixedTimeoutDetector d(Duration::seconds(3), t0);
    EXPECT_EQ(d.conviction_time(), t0 + Duration::seconds(3));
    d.on_arrival(t0 + Duration::seconds(2));
    EXPECT_FALSE(d.convicts(t0 + Duration::milliseconds(4999)));
    EXPECT_TRUE(d.convicts(t0 + Duration::seconds(5)));
    EXPECT_DOUBLE_EQ(d.suspicion(t0 + Duration::milliseconds(3500)), 0.5);
    EXPECT_DOUBLE_EQ(d.suspicion(t0 + Duration::seconds(5)), d.threshold());
}

TEST(FixedTimeoutDetector, OutOfOrderArrivalDoesNotMoveTimeBack) {
    FixedTimeoutDetector d(Duration::seconds(1), t0);
    d.on_arrival(t0 + Duration::seconds(5));
    d.on_arrival(t0 + Duration::seconds(4));
    EXPECT_EQ(d.last_arrival(), t0 + Duration::seconds(5));
}

TEST(PhiAccrualConfig, RejectsNonsense) {
    PhiAccrualConfig c;
    EXPECT_TRUE(c.validate().ok());
    c.threshold = 0.5;
    EXPECT_FALSE(c.validate().ok());
    EXPECT_NE(c.validate().error().message.find("threshold"), std::string::npos);
    c = {};
    c.max_sample_size = 1;
    EXPECT_FALSE(c.validate().ok());
    c = {};
    c.min_std_deviation = Duration::zero();
    EXPECT_FALSE(c.validate().ok());
}

TEST(PhiAccrualDetector, PhiGrowsWithSilenceAndMatchesAkkaValues) {
    PhiAccrualConfig c;
    c.min_std_deviation = Duration::milliseconds(1);
    PhiAccrualDetector d(c, t0);
    Instant t = t0;
    for (int i = 0; i < 50; ++i) {
        t += Duration::milliseconds(1000);
        d.on_arrival(t);
    }
    // Nearly constant 1 s intervals (the two seed samples add a little spread).
    EXPECT_NEAR(static_cast<double>(d.mean().ms()), 1000.0, 1.0);
    const double at_mean = d.phi(t + Duration::milliseconds(1000));
    EXPECT_NEAR(at_mean, 0.30103, 0.001);  // -log10(0.5): half of arrivals come later than the mean.
    EXPECT_LT(d.phi(t + Duration::milliseconds(500)), at_mean);
    EXPECT_GT(d.phi(t + Duration::milliseconds(1500)), at_mean);
}

TEST(PhiAccrualDetector, ConvictionTimeIsWherePhiCrossesThreshold) {
    for (double threshold : {1.0, 3.0, 8.0, 12.0}) {
        PhiAccrualConfig c;
        c.threshold = threshold;
        PhiAccrualDetector d(c, t0);
        std::mt19937_64 rng(7);
        std::normal_distribution<double> jitter(0.0, 50.0);
        Instant t = t0;
        for (int i = 0; i < 100; ++i) {
            t += Duration::microseconds(static_cast<std::int64_t>((1000.0 + jitter(rng)) * 1000));
            d.on_arrival(t);
        }
        const Instant convict = d.conviction_time();
        EXPECT_GE(d.phi(convict), threshold) << threshold;
        EXPECT_LT(d.phi(convict - Duration::milliseconds(1)), threshold) << threshold;
        EXPECT_TRUE(d.convicts(convict));
        EXPECT_FALSE(d.convicts(convict - Duration::microseconds(1)));
    }
}

TEST(PhiAccrualDetector, AcceptablePauseDelaysConviction) {
    PhiAccrualConfig c;
    PhiAccrualDetector plain(c, t0);
    c.acceptable_pause = Duration::seconds(2);
    PhiAccrualDetector patient(c, t0);
    EXPECT_EQ(patient.conviction_time() - plain.conviction_time(), Duration::seconds(2));
}

TEST(PhiAccrualDetector, WindowIsBounded) {
    PhiAccrualConfig c;
    c.max_sample_size = 10;
    PhiAccrualDetector d(c, t0);
    Instant t = t0;
    for (int i = 0; i < 100; ++i) {
        t += Duration::milliseconds(200);
        d.on_arrival(t);
    }
    EXPECT_EQ(d.samples(), 10u);
    // Old (seeded 1 s) samples have rotated out: the mean is the recent 200 ms.
    EXPECT_EQ(d.mean(), Duration::milliseconds(200));
    EXPECT_EQ(d.std_deviation(), c.min_std_deviation);
}

}  // namespace
}  // namespace lifeline
