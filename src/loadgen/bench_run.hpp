// Internal: one `lifeline bench` process (a shard) and the aggregation of
// several. A shard runs one LoadEngine per thread on an absolute monotonic
// timeline shared by every shard, so they ramp, go silent and stop together.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/load_engine.hpp"

namespace lifeline::loadgen {

struct BenchPlan {
    LoadOptions load;  // connections = this shard's share; ramp = this shard's rate.
    int threads = 1;
    std::int64_t epoch_ns = 0;                         // CLOCK_MONOTONIC: when every shard starts connecting.
    Duration ramp;                                     // How long the whole ramp takes (all shards).
    Duration hold;                                     // After the ramp: how long to keep the load.
    double silence_fraction = 0;                       // 0 = no mass failure.
    Duration silence_after;                            // After the ramp.
    std::function<void(const std::string&)> progress;  // Progress lines (stderr), may be empty.
};

struct BenchResult {
    LoadStats stats;    // Summed over engines (and shards).
    Duration measured;  // The hold window over which round trips were counted.
    std::uint64_t round_trips_in_hold = 0;
};

// Runs one shard to completion; an error when an engine cannot be set up.
Result<BenchResult> run_shard(const BenchPlan& plan);

// The most connections one engine (one lifeline::Client) drives.
inline constexpr int kMaxConnectionsPerEngine = 20'000;

nlohmann::json to_json(const BenchResult& result);
Result<BenchResult> bench_result_from_json(const nlohmann::json& j);
// Adds `other` into `into` (counts summed, samples concatenated).
void merge(BenchResult& into, const BenchResult& other);

// The value at quantile q (0..1) of `samples` (sorted in place); 0 if empty.
std::int64_t quantile(std::vector<std::int64_t>& samples, double q);

// "127.0.0.2-127.0.0.254" -> every address in the range (IPv4, at most 65536).
Result<std::vector<std::string>> expand_address_range(const std::string& range);

}  // namespace lifeline::loadgen
