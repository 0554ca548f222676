// Fleet presence when a client's cable is pulled: two `lifeline serve
// --presence` gateways, a redis-server and two clients, each in a network
// namespace of its own on one switch (tests/support/netns.hpp). The pulled
// client's packets vanish both ways (no RST, no ICMP): its gateway's heartbeat
// timeout is the only way to know, and the stream must say heartbeat_timeout
// within the detection budget and one refresh interval, while the other
// gateway's client stays online. Needs root; skips with the reason otherwise,
// and fails instead of skipping when CI=true.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lifeline/presence_reader.hpp"
#include "support/bounds.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"
#include "support/presence_stream.hpp"
#include "support/redis_server.hpp"

namespace lifeline {
namespace {

using lifeline::testing::ChildProcess;
using lifeline::testing::SwitchedNetwork;
using namespace std::chrono_literals;

constexpr int kGatewayA = 0, kGatewayB = 1, kRedis = 2, kPulled = 3, kKept = 4;
constexpr std::int64_t kTimeoutMs = 1000;
constexpr std::int64_t kIntervalMs = 1000;  // --presence-ttl 3s: refreshed every second.

std::unique_ptr<ChildProcess> start_in(const SwitchedNetwork& net, int host, std::vector<std::string> argv) {
    std::vector<std::string> full{"/usr/bin/env", "ip", "netns", "exec", net.host_ns(host)};
    full.insert(full.end(), argv.begin(), argv.end());
    return std::make_unique<ChildProcess>(full);
}

TEST(PresenceRedisNetns, APulledCableIsOfflineAsHeartbeatTimeoutWithinTheBudgetAndOneInterval) {
    LIFELINE_REQUIRE_NETNS();
    SwitchedNetwork net(5);
    testing::RedisServer redis({{"ip", "netns", "exec", net.host_ns(kRedis)}, net.address(kRedis), 6379});
    std::vector<std::unique_ptr<ChildProcess>> gateways;
    for (const auto& [host, name] : {std::pair{kGatewayA, "gw-a"}, std::pair{kGatewayB, "gw-b"}}) {
        gateways.push_back(
            start_in(net, host,
                     {LIFELINE_BINARY, "serve", "--listen", net.address(host) + ":8888", "--heartbeat", "200ms",
                      "--timeout", "1s", "--presence", redis.url(), "--gateway", name, "--presence-ttl", "3s"}));
        ASSERT_TRUE(gateways.back()->wait_for_event("listening", 10s)) << name;
    }
    auto client = [&](int host, int gateway, const std::string& id) {
        auto c = start_in(net, host,
                          {LIFELINE_BINARY, "connect", net.address(gateway) + ":8888", "--id", id, "--heartbeat",
                           "200ms", "--timeout", "1s"});
        EXPECT_TRUE(c->wait_for_event("hello", 10s)) << id;
        return c;
    };
    auto pulled = client(kPulled, kGatewayA, "pulled");
    auto kept = client(kKept, kGatewayB, "kept");

    Result<PresenceReader> reader = net.in_namespace_of(kRedis, [&] { return PresenceReader::connect(redis.url()); });
    ASSERT_TRUE(reader) << reader.error().message;
    testing::PresenceStream stream(*reader);
    ASSERT_TRUE(stream.await_event("online", "pulled", 5s));
    const auto kept_online = stream.await_event("online", "kept", 5s);
    ASSERT_TRUE(kept_online);
    EXPECT_EQ(kept_online->gateway, "gw-b");

    const std::int64_t pulled_at = testing::unix_ms();
    net.pull_cable(kPulled);
    const auto offline = stream.await_event(
        "offline", "pulled", std::chrono::milliseconds(kTimeoutMs + kIntervalMs) + testing::kSchedulingSlack * 2);
    ASSERT_TRUE(offline) << "no offline for the client whose cable was pulled";
    EXPECT_EQ(offline->reason, "heartbeat_timeout");
    EXPECT_EQ(offline->gateway, "gw-a");
    EXPECT_GE(offline->detected_after_ms, kTimeoutMs);
    EXPECT_LE(offline->time_ms - pulled_at, kTimeoutMs + kIntervalMs + testing::kSchedulingSlackMs);
    Result<std::optional<FleetPresence>> still = reader->get("kept");
    ASSERT_TRUE(still && *still);
    EXPECT_TRUE((*still)->online);
    EXPECT_TRUE(stream.of("kept", "offline").empty());
    stream.expect_epoch_order_without_duplicates();
}

}  // namespace
}  // namespace lifeline
