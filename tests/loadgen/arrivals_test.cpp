// The arrival models and client ids: uniform phases are spread over the whole
// interval, independent of the ramp order, reproducible from the seed; burst
// adds nothing; ids are unique and of a realistic length.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "loadgen/load_engine.hpp"

namespace lifeline::loadgen {
namespace {

constexpr int kConnections = 19'000;
constexpr Duration kInterval = Duration::seconds(1);

std::vector<std::int64_t> phases_ns(Arrivals arrivals, std::uint64_t seed) {
    std::uint64_t state = seed;
    std::vector<std::int64_t> out;
    for (int i = 0; i < kConnections; ++i) out.push_back(start_jitter(arrivals, kInterval, state).ns());
    return out;
}

TEST(Arrivals, UniformPhasesFillTheIntervalEvenly) {
    const std::vector<std::int64_t> phases = phases_ns(Arrivals::uniform, 7);
    // 100 slices of 10 ms: each expects 190; a fixed seed makes this exact and
    // repeatable, and 5 standard deviations (~69) is far from any real bias.
    std::vector<int> slices(100);
    for (const std::int64_t p : phases) {
        ASSERT_GE(p, 0);
        ASSERT_LT(p, kInterval.ns());
        ++slices[static_cast<std::size_t>(p / Duration::milliseconds(10).ns())];
    }
    for (std::size_t s = 0; s < slices.size(); ++s) EXPECT_NEAR(slices[s], 190, 69) << "slice " << s;
}

TEST(Arrivals, UniformPingsShareATickOnlyAsOftenAsIndependentArrivalsWould) {
    // Two pings leave in one generator turn only if they fall in the same
    // kUniformTick. For n independent uniform phases, the expected number of
    // occupied ticks out of T is T * (1 - (1 - 1/T)^n); burst puts them all
    // on the 10 ms ticks (100 a second).
    std::vector<std::int64_t> phases = phases_ns(Arrivals::uniform, 11);
    std::set<std::int64_t> ticks;
    for (const std::int64_t p : phases) ticks.insert(p / kUniformTick.ns());
    const double t = static_cast<double>(kInterval.ns() / kUniformTick.ns());
    const double expected = t * (1 - std::pow(1 - 1 / t, kConnections));
    EXPECT_NEAR(static_cast<double>(ticks.size()), expected, expected * 0.02);
    // Every ping has its own instant: no two phases are equal.
    std::sort(phases.begin(), phases.end());
    EXPECT_EQ(std::adjacent_find(phases.begin(), phases.end()), phases.end());
}

TEST(Arrivals, TheSeedReproducesARunAndAnotherSeedDoesNot) {
    EXPECT_EQ(phases_ns(Arrivals::uniform, 3), phases_ns(Arrivals::uniform, 3));
    EXPECT_NE(phases_ns(Arrivals::uniform, 3), phases_ns(Arrivals::uniform, 4));
}

TEST(Arrivals, BurstAddsNoJitter) {
    for (const std::int64_t p : phases_ns(Arrivals::burst, 3)) ASSERT_EQ(p, 0);
}

TEST(ClientIds, AreUniqueAndOfRealisticLength) {
    std::set<std::string> ids;
    // Seeds as bench gives them: shard seeds (seed * 1000 + shard + 1), then thread seeds (* 1000 + t).
    for (std::uint64_t shard = 1; shard <= 50; ++shard) {
        for (std::uint64_t thread = 0; thread < 4; ++thread) {
            const std::string base = client_id_base((1000 + shard) * 1000 + thread);
            EXPECT_EQ(base.rfind("device-", 0), 0u) << base;
            // lifeline::Client appends "-<index>", index < 20,000 per engine.
            for (const int index : {0, 9, 19'999}) {
                const std::string id = base + "-" + std::to_string(index);
                EXPECT_GE(id.size(), 16u) << id;
                EXPECT_LE(id.size(), 36u) << id;
                EXPECT_TRUE(ids.insert(id).second) << "duplicate " << id;
            }
        }
    }
}

}  // namespace
}  // namespace lifeline::loadgen
