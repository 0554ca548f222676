#include "sim/simulation.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace lifeline::sim {
namespace {

// Each seed is its own ctest test, so they run in parallel. LIFELINE_SIM_SEED=<n>
// replays one seed instead (the seed is in every failure message).
std::uint64_t seed_or_replay(std::uint64_t seed) {
    if (const char* s = std::getenv("LIFELINE_SIM_SEED")) return std::strtoull(s, nullptr, 10);
    return seed;
}

std::string joined(const std::vector<std::string>& lines, std::size_t max = 10) {
    std::string out;
    for (std::size_t i = 0; i < lines.size() && i < max; ++i) out += "  " + lines[i] + "\n";
    if (lines.size() > max) out += "  ... and " + std::to_string(lines.size() - max) + " more\n";
    return out;
}

class SimulationSeed : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(SimulationSeed, TenThousandConnectionsEveryDeadPeerCaughtNoLivePeerConvicted) {
    {
        const std::uint64_t seed = seed_or_replay(GetParam());
        SimulationConfig config;
        config.seed = seed;
        config.connections = 10'000;
        config.duration = Duration::seconds(40);
        const SimulationReport report = run_simulation(config);
        ASSERT_TRUE(report.violations.empty()) << report.violations.size() << " violations:\n"
                                               << joined(report.violations);
        ASSERT_FALSE(report.hit_event_limit);
        // The configured ones, then one more per client that came back on a new connection.
        ASSERT_GT(report.connections.size(), 10'000u);

        std::size_t crashed = 0, frozen_convicted = 0, frozen_spared = 0, live = 0;
        std::size_t impostors = 0, replaced = 0, returned = 0;
        for (const ConnectionOutcome& c : report.connections) {
            switch (c.fate) {
                case PeerFate::crashed:
                    ++crashed;
                    EXPECT_TRUE(c.server_declared_at.is_set()) << "seed=" << seed << " conn " << c.id;
                    EXPECT_EQ(c.server_reason, DisconnectReason::heartbeat_timeout);
                    break;
                case PeerFate::frozen:
                    (c.server_declared_at.is_set() ? frozen_convicted : frozen_spared)++;
                    // A freeze longer than the timeout plus one interval is always fatal.
                    if (c.freeze_for > config.timeout + config.interval) {
                        EXPECT_TRUE(c.server_declared_at.is_set()) << "seed=" << seed << " conn " << c.id;
                    }
                    // One shorter than the timeout minus an interval and the worst delay never is.
                    if (c.freeze_for < config.timeout - config.interval - Duration::milliseconds(700)) {
                        EXPECT_FALSE(c.server_declared_at.is_set()) << "seed=" << seed << " conn " << c.id;
                    }
                    break;
                case PeerFate::impostor:
                    ++impostors;
                    EXPECT_EQ(c.server_reason, DisconnectReason::rejected) << "seed=" << seed << " conn " << c.id;
                    break;
                case PeerFate::replaced:
                    replaced += c.server_reason == DisconnectReason::session_replaced ? 1 : 0;
                    break;
                case PeerFate::returned:
                    ++returned;
                    EXPECT_TRUE(c.opened) << "seed=" << seed << " conn " << c.id;
                    EXPECT_FALSE(c.server_declared_at.is_set()) << "seed=" << seed << " conn " << c.id;
                    break;
                case PeerFate::healthy:
                case PeerFate::busy:
                    ++live;
                    EXPECT_FALSE(c.server_declared_at.is_set()) << "seed=" << seed << " conn " << c.id;
                    EXPECT_FALSE(c.client_reason.has_value()) << "seed=" << seed << " conn " << c.id;
                    EXPECT_LT(c.longest_silence, config.timeout);
                    EXPECT_GT(c.rtt_smoothed, Duration::zero());
                    break;
            }
        }
        // The seeded mix really contains every kind of peer.
        EXPECT_GT(crashed, 300u);
        EXPECT_GT(frozen_convicted, 50u);
        EXPECT_GT(frozen_spared, 20u);
        EXPECT_GT(live, 7'800u);
        EXPECT_GT(impostors, 50u);
        EXPECT_GT(returned, 50u);
        EXPECT_EQ(replaced, returned);  // With these timings every comeback meets its old connection.
    }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SimulationSeed, ::testing::Values(1, 2, 3));

TEST(Simulation, SameSeedSameReport) {
    SimulationConfig config;
    config.seed = 42;
    config.connections = 300;
    config.duration = Duration::seconds(20);
    const SimulationReport a = run_simulation(config);
    const SimulationReport b = run_simulation(config);
    EXPECT_EQ(a.events, b.events);
    EXPECT_EQ(a.frames, b.frames);
    ASSERT_EQ(a.connections.size(), b.connections.size());
    for (std::size_t i = 0; i < a.connections.size(); ++i) {
        EXPECT_EQ(a.connections[i].server_declared_at, b.connections[i].server_declared_at);
        EXPECT_EQ(a.connections[i].last_arrival, b.connections[i].last_arrival);
    }
    config.seed = 43;
    EXPECT_NE(run_simulation(config).events, a.events);
}

// The checker is real: a server whose detector is off by a little is caught,
// and the message names the seed to replay.
TEST(Simulation, ChecksCatchAnEarlyDetector) {
    SimulationConfig config;
    config.seed = 5;
    config.connections = 500;
    config.duration = Duration::seconds(20);
    config.server_timeout_error = Duration::milliseconds(-50);
    const SimulationReport report = run_simulation(config);
    ASSERT_FALSE(report.violations.empty());
    EXPECT_NE(report.violations.front().find("early"), std::string::npos) << report.violations.front();
    EXPECT_NE(report.violations.front().find("seed=5"), std::string::npos);
}

// A server that lets anyone take any id is caught: impostors get in, and
// their victims end with session_replaced nobody asked for.
TEST(Simulation, ChecksCatchATakeoverWithoutItsToken) {
    SimulationConfig config;
    config.seed = 7;
    config.connections = 500;
    config.duration = Duration::seconds(20);
    config.faults.impostor_fraction = 0.05;
    config.admit_every_claim = true;
    const SimulationReport report = run_simulation(config);
    bool impostor = false, victim = false;
    for (const auto& v : report.violations) {
        impostor |= v.find("impostor claiming conn") != std::string::npos;
        victim |= v.find("replaced although nobody presented its resume token") != std::string::npos;
    }
    EXPECT_TRUE(impostor) << joined(report.violations);
    EXPECT_TRUE(victim) << joined(report.violations);
}

TEST(Simulation, ChecksCatchALateDetector) {
    SimulationConfig config;
    config.seed = 6;
    config.connections = 500;
    config.duration = Duration::seconds(20);
    config.server_timeout_error = Duration::milliseconds(50);
    const SimulationReport report = run_simulation(config);
    ASSERT_FALSE(report.violations.empty());
    bool late_or_missed = false;
    for (const auto& v : report.violations) {
        late_or_missed |= v.find("late") != std::string::npos || v.find("missed") != std::string::npos;
    }
    EXPECT_TRUE(late_or_missed) << joined(report.violations);
}

TEST(Simulation, EventLimitBoundsTheRun) {
    SimulationConfig config;
    config.connections = 100;
    config.max_events = 1000;
    const SimulationReport report = run_simulation(config);
    EXPECT_TRUE(report.hit_event_limit);
    EXPECT_LE(report.events, 1001u);
}

}  // namespace
}  // namespace lifeline::sim
