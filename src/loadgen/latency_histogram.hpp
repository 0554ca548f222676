// Internal: the generator's record of heartbeat round trips (send -> echo,
// PONG or PINGRESP received). A fixed array of log-linear buckets, as in
// HdrHistogram: recording is one index computation and one increment, memory
// is fixed (about 9 KiB per engine) whatever the sample count, and two
// histograms add and subtract bucket by bucket, so shards merge and a window
// is a difference of two snapshots.
//
// Resolution: values below 64 ns are exact; above, each power of two is cut
// into 32 buckets, so a reported quantile is within 1/64 (1.6 %) of a sample
// of that rank. Values past 2^41 ns (36 minutes) land in the last bucket.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>

#include "lifeline/result.hpp"

namespace lifeline::loadgen {

class LatencyHistogram {
public:
    static constexpr int kSubBucketBits = 5;  // 32 buckets per power of two.
    static constexpr int kMaxExponent = 41;   // The last power of two with its own buckets.
    static constexpr std::size_t kBuckets =
        (std::size_t{1} << (kSubBucketBits + 1)) + (kMaxExponent - kSubBucketBits) * (std::size_t{1} << kSubBucketBits);

    // Negative values (a clock that went backwards) count as 0.
    void record_ns(std::int64_t ns);
    void add(const LatencyHistogram& other);
    // Removes `earlier`, a snapshot of this histogram taken before (counts never go negative).
    void subtract(const LatencyHistogram& earlier);

    std::uint64_t count() const { return count_; }
    // Nearest rank: the bucket holding the ceil(q * count)-th smallest sample,
    // reported as its midpoint (clamped to the largest sample seen), or the
    // largest sample itself for the last rank; 0 if empty.
    std::int64_t quantile_ns(double q) const;

    // Which bucket `ns` falls in, and the smallest value of bucket `index` (both exposed for the tests).
    static std::size_t bucket_of(std::int64_t ns);
    static std::int64_t bucket_start_ns(std::size_t index);

    // Sparse: [[bucket, count], ...] and the largest sample.
    nlohmann::json to_json() const;
    static Result<LatencyHistogram> from_json(const nlohmann::json& j);

private:
    std::array<std::uint64_t, kBuckets> counts_{};
    std::uint64_t count_ = 0;
    std::int64_t max_ns_ = 0;
};

}  // namespace lifeline::loadgen
