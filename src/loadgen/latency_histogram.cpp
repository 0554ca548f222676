#include "loadgen/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <nlohmann/json.hpp>

namespace lifeline::loadgen {

namespace {

constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << LatencyHistogram::kSubBucketBits;
constexpr std::uint64_t kExactBelow = 2 * kSubBuckets;  // 64: every value below has its own bucket.

}  // namespace

std::size_t LatencyHistogram::bucket_of(std::int64_t ns) {
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0));
    if (v < kExactBelow) return static_cast<std::size_t>(v);
    const int msb = static_cast<int>(std::bit_width(v)) - 1;  // >= kSubBucketBits + 1
    if (msb > kMaxExponent) return kBuckets - 1;
    // The top kSubBucketBits + 1 bits: a leading 1 and the sub-bucket.
    const int shift = msb - kSubBucketBits;
    const std::uint64_t sub = (v >> shift) - kSubBuckets;
    return static_cast<std::size_t>(kExactBelow + static_cast<std::uint64_t>(shift - 1) * kSubBuckets + sub);
}

std::int64_t LatencyHistogram::bucket_start_ns(std::size_t index) {
    if (index < kExactBelow) return static_cast<std::int64_t>(index);
    const std::uint64_t past = index - kExactBelow;
    const std::uint64_t shift = past / kSubBuckets + 1;
    const std::uint64_t sub = past % kSubBuckets;
    return static_cast<std::int64_t>((kSubBuckets + sub) << shift);
}

void LatencyHistogram::record_ns(std::int64_t ns) {
    ++counts_[bucket_of(ns)];
    ++count_;
    max_ns_ = std::max(max_ns_, ns);
}

void LatencyHistogram::add(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    max_ns_ = std::max(max_ns_, other.max_ns_);
}

void LatencyHistogram::subtract(const LatencyHistogram& earlier) {
    count_ = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        counts_[i] -= std::min(counts_[i], earlier.counts_[i]);
        count_ += counts_[i];
    }
    // The window's largest sample is in its highest non-empty bucket: bound
    // the maximum by that bucket's end (exact only if the maximum fell in the window).
    std::size_t top = kBuckets;
    while (top > 0 && counts_[top - 1] == 0) --top;
    if (top == 0) {
        max_ns_ = 0;
    } else if (top < kBuckets) {
        max_ns_ = std::min(max_ns_, bucket_start_ns(top) - 1);
    }
}

std::int64_t LatencyHistogram::quantile_ns(double q) const {
    if (count_ == 0) return 0;
    const double clamped = std::clamp(q, 0.0, 1.0);
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(clamped * double(count_))));
    if (rank == count_) return max_ns_;  // The largest sample is known exactly.
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += counts_[i];
        if (seen < rank) continue;
        const std::int64_t start = bucket_start_ns(i);
        const std::int64_t width = i + 1 < kBuckets ? bucket_start_ns(i + 1) - start : 0;
        return std::min(start + width / 2, max_ns_);
    }
    return max_ns_;
}

nlohmann::json LatencyHistogram::to_json() const {
    nlohmann::json buckets = nlohmann::json::array();
    for (std::size_t i = 0; i < kBuckets; ++i) {
        if (counts_[i] != 0) buckets.push_back({i, counts_[i]});
    }
    return nlohmann::json{{"buckets", buckets}, {"max_ns", max_ns_}};
}

Result<LatencyHistogram> LatencyHistogram::from_json(const nlohmann::json& j) {
    try {
        LatencyHistogram h;
        for (const auto& pair : j.at("buckets")) {
            const auto index = pair.at(0).get<std::size_t>();
            if (index >= kBuckets) return Error{"latency histogram: bucket " + std::to_string(index) + " out of range"};
            const auto n = pair.at(1).get<std::uint64_t>();
            h.counts_[index] += n;
            h.count_ += n;
        }
        h.max_ns_ = j.at("max_ns").get<std::int64_t>();
        return h;
    } catch (const nlohmann::json::exception& e) {
        return Error{std::string("latency histogram: ") + e.what()};
    }
}

}  // namespace lifeline::loadgen
