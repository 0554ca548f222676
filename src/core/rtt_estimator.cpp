#include "core/rtt_estimator.hpp"

#include <algorithm>
#include <cstdlib>

namespace lifeline {

namespace {
std::uint32_t clamp_us(Duration d) {
    const std::int64_t us = std::clamp<std::int64_t>(d.us(), 0, UINT32_MAX);
    return static_cast<std::uint32_t>(us);
}
}  // namespace

void RttEstimator::on_sample(Duration rtt) {
    const std::uint32_t r = clamp_us(rtt);
    if (samples_ == 0) {
        srtt_us_ = r;
        rttvar_us_ = r / 2;
        min_us_ = r;
    } else {
        const std::int64_t delta = std::llabs(static_cast<std::int64_t>(srtt_us_) - r);
        rttvar_us_ = static_cast<std::uint32_t>((3 * static_cast<std::int64_t>(rttvar_us_) + delta) / 4);
        srtt_us_ = static_cast<std::uint32_t>((7 * static_cast<std::int64_t>(srtt_us_) + r) / 8);
        min_us_ = std::min(min_us_, r);
    }
    if (samples_ < UINT32_MAX) ++samples_;
}

Duration RttEstimator::retransmission_timeout(Duration granularity) const {
    return smoothed() + std::max(granularity, variance() * 4);
}

}  // namespace lifeline
