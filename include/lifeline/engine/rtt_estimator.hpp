// Round-trip time estimation from PING/PONG samples, the way TCP does it.
//
// RFC 6298 section 2: the first sample R sets SRTT = R and RTTVAR = R/2; each
// later sample updates RTTVAR = (1 - beta) * RTTVAR + beta * |SRTT - R| and then
// SRTT = (1 - alpha) * SRTT + alpha * R, with alpha = 1/8 and beta = 1/4.
// Values are kept in whole microseconds in 32 bits (enough for 71 minutes) so
// the estimator costs 12 bytes per connection.
#pragma once

#include <cstdint>

#include "lifeline/time.hpp"

namespace lifeline {

class RttEstimator {
public:
    void on_sample(Duration rtt);

    bool has_sample() const { return min_us_ != kNoSample; }
    Duration smoothed() const { return Duration::microseconds(srtt_us_); }
    Duration variance() const { return Duration::microseconds(rttvar_us_); }
    Duration min() const { return has_sample() ? Duration::microseconds(min_us_) : Duration::zero(); }
    // RFC 6298 (2.3): SRTT + max(G, 4 * RTTVAR), with clock granularity G.
    Duration retransmission_timeout(Duration granularity) const;

private:
    static constexpr std::uint32_t kNoSample = UINT32_MAX;  // min_us_ before the first sample.
    std::uint32_t srtt_us_ = 0;
    std::uint32_t rttvar_us_ = 0;
    std::uint32_t min_us_ = kNoSample;
};

}  // namespace lifeline
