#include "lifeline/engine/rtt_estimator.hpp"

#include <algorithm>
#include <cstdlib>

namespace lifeline {

namespace {
std::uint32_t clamp_us(Duration d) {
    // One below the "no sample" marker: a 71-minute RTT is absurd anyway.
    const std::int64_t us = std::clamp<std::int64_t>(d.us(), 0, UINT32_MAX - 1);
    return static_cast<std::uint32_t>(us);
}
}  // namespace

void RttEstimator::on_sample(Duration rtt) {
    const std::uint32_t r = clamp_us(rtt);
    if (!has_sample()) {
        srtt_us_ = r;
        rttvar_us_ = r / 2;
        min_us_ = r;
    } else {
        const std::int64_t delta = std::llabs(static_cast<std::int64_t>(srtt_us_) - r);
        rttvar_us_ = static_cast<std::uint32_t>((3 * static_cast<std::int64_t>(rttvar_us_) + delta) / 4);
        srtt_us_ = static_cast<std::uint32_t>((7 * static_cast<std::int64_t>(srtt_us_) + r) / 8);
        min_us_ = std::min(min_us_, r);
    }
}

Duration RttEstimator::retransmission_timeout(Duration granularity) const {
    return smoothed() + std::max(granularity, variance() * 4);
}

}  // namespace lifeline
