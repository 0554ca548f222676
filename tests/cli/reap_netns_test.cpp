// `lifeline reap` in network namespaces: host 1 runs two plain clients
// (tests/cli/programs/plain_client.c), one writing into the plain server on
// host 0, one idle towards the plain server on host 2. Host 0's cable is
// pulled: the writer's data stays unacknowledged and is retransmitted with
// backoff. reap reports it (and not the healthy one); reap --kill destroys it,
// and the writer, blocked in write(), gets its error within 1 s while the
// healthy connection stays established. Needs root; skips with the reason
// otherwise, and fails instead of skipping when CI=true.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/netns_sockets.hpp"
#include "support/bounds.hpp"
#include "support/netns.hpp"

namespace lifeline {
namespace {

using Clock = std::chrono::steady_clock;
using lifeline::testing::established_in;
using lifeline::testing::line_with;
using lifeline::testing::run_command;
using lifeline::testing::start_in;
using lifeline::testing::SwitchedNetwork;
using namespace std::chrono_literals;

constexpr int kDeadHost = 0;
constexpr int kClientHost = 1;
constexpr int kHealthyHost = 2;
constexpr const char* kPort = "8888";

TEST(Reap, KillEndsTheStuckWriterWithinOneSecondAndLeavesTheHealthyConnection) {
    LIFELINE_REQUIRE_NETNS();
    SwitchedNetwork net(3);
    auto dead_server = start_in(net, kDeadHost, {PLAIN_SERVER, net.address(kDeadHost), kPort});
    auto healthy_server = start_in(net, kHealthyHost, {PLAIN_SERVER, net.address(kHealthyHost), kPort});
    ASSERT_TRUE(line_with(*dead_server, "listening", 10s));
    ASSERT_TRUE(line_with(*healthy_server, "listening", 10s));
    auto writer = start_in(net, kClientHost, {PLAIN_CLIENT, net.address(kDeadHost), kPort, "write"});
    auto idle = start_in(net, kClientHost, {PLAIN_CLIENT, net.address(kHealthyHost), kPort});
    ASSERT_TRUE(line_with(*writer, "connected", 10s));
    ASSERT_TRUE(line_with(*idle, "connected", 10s));
    ASSERT_TRUE(line_with(*dead_server, "accepted", 10s));
    ASSERT_TRUE(line_with(*healthy_server, "accepted", 10s));

    net.pull_cable(kDeadHost);
    writer->write_stdin("go\n");  // Only now: every byte it writes stays unacknowledged.

    // Report only, until the kernel's evidence is there (1 s without an ACK).
    const std::string reap = net.in_host(kClientHost, std::string(LIFELINE_BINARY) + " reap --dead-for 1s");
    const std::string dead_peer = net.address(kDeadHost) + ":" + kPort;
    std::string report;
    const auto give_up = Clock::now() + 15s;
    for (int i = 0; i < 1000 && Clock::now() < give_up; ++i) {
        const auto r = run_command(reap);
        ASSERT_EQ(r.status, 0) << r.output;
        report = r.output;
        if (report.find(dead_peer) != std::string::npos) break;
        // Each run takes tens of milliseconds; the evidence builds up meanwhile.
    }
    ASSERT_NE(report.find(dead_peer), std::string::npos) << "reap never reported the stuck writer:\n" << report;
    std::printf("%s", report.c_str());
    EXPECT_NE(report.find("retransmitting"), std::string::npos) << report;
    EXPECT_NE(report.find("plain_client"), std::string::npos) << "no owner shown:\n" << report;
    EXPECT_EQ(report.find(net.address(kHealthyHost)), std::string::npos) << "the healthy one is not dead:\n" << report;
    EXPECT_FALSE(writer->next_line(0ms)) << "the writer ended before reap --kill";

    const auto started = Clock::now();
    const auto killed =
        run_command(net.in_host(kClientHost, std::string(LIFELINE_BINARY) + " reap --kill --dead-for 1s"));
    ASSERT_EQ(killed.status, 0) << killed.output;
    EXPECT_NE(killed.output.find("killed"), std::string::npos) << killed.output;
    const std::optional<std::string> error = line_with(*writer, "error", 1s + testing::kSchedulingSlack);
    const auto latency = Clock::now() - started;
    ASSERT_TRUE(error) << "the writer got no error after reap --kill";
    EXPECT_NE(error->find("error " + std::to_string(ECONNABORTED)), std::string::npos) << *error;
    EXPECT_LE(latency, 1s + testing::kSchedulingSlack);  // The promise plus what only starvation crosses.

    // The healthy connection is untouched: still established, its reader still blocked.
    EXPECT_EQ(established_in(net.host_ns(kClientHost), 8888).size(), 1u);
    EXPECT_FALSE(idle->next_line(0ms)) << "the healthy client was disturbed";
    std::printf("[ measured ] writer's error (%s) %lld ms after reap --kill started\n", error->c_str(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count()));
}

}  // namespace
}  // namespace lifeline
