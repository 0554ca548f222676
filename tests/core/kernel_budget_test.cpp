#include <gtest/gtest.h>

#include "lifeline/sys/detection_budget.hpp"

namespace lifeline {
namespace {

TEST(KernelBudget, KernelDefaults) {
    const TcpKernelSettings defaults;
    // 7200 + 75 * 9 = 7875 s = 2 h 11 min 15 s.
    EXPECT_EQ(idle_peer_detection(defaults), Duration::seconds(7875));
    // tcp_retries2 = 15: 1023 * 200 ms + 6 * 120 s = 924.6 s (the "about fifteen minutes").
    EXPECT_EQ(retransmission_give_up(15), Duration::milliseconds(924'600));
    // tcp_syn_retries = 6: 1 + 2 + 4 + 8 + 16 + 32 + 64 = 127 s.
    EXPECT_EQ(connect_give_up(6), Duration::seconds(127));
}

TEST(KernelBudget, RetransmissionModelAroundTheBackoffCap) {
    EXPECT_EQ(retransmission_give_up(0), Duration::zero());
    EXPECT_EQ(retransmission_give_up(1), Duration::milliseconds(600));      // 3 * 200 ms
    EXPECT_EQ(retransmission_give_up(3), Duration::milliseconds(3000));     // 15 * 200 ms
    EXPECT_EQ(retransmission_give_up(8), Duration::milliseconds(102'200));  // 511 * 200 ms: RFC 1122's 100 s
    EXPECT_EQ(retransmission_give_up(9), Duration::milliseconds(204'600));
    EXPECT_EQ(retransmission_give_up(10), Duration::milliseconds(324'600));
}

TEST(KernelBudget, AdviceMeetsTargetWithThreeProbes) {
    auto a = advise_keepalive(Duration::seconds(10), std::nullopt);
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_TRUE(a->policy.validate().ok());
    EXPECT_LE(a->worst_case, Duration::seconds(10));
    EXPECT_EQ(a->policy.count, 3);
    EXPECT_EQ(a->policy.interval, Duration::seconds(1));
    EXPECT_EQ(a->policy.idle, Duration::seconds(7));
    EXPECT_EQ(a->policy.user_timeout_value(), a->worst_case);
    EXPECT_NEAR(a->probes_per_hour, 3600.0 / 7, 0.01);
    EXPECT_LE(retransmission_give_up(a->retries2_within_target), Duration::seconds(10));
    EXPECT_GT(retransmission_give_up(a->retries2_within_target + 1), Duration::seconds(10));
}

TEST(KernelBudget, AdviceForManyTargetsNeverExceedsThem) {
    for (int s = 2; s <= 7200; s = s < 100 ? s + 1 : s * 2) {
        auto a = advise_keepalive(Duration::seconds(s), std::nullopt);
        ASSERT_TRUE(a.ok()) << s;
        EXPECT_TRUE(a->policy.validate().ok()) << s;
        EXPECT_LE(a->worst_case, Duration::seconds(s)) << s;
        EXPECT_GE(a->worst_case, Duration::seconds(s) * 8 / 10 - Duration::seconds(1)) << s << ": wastes the budget";
    }
}

TEST(KernelBudget, NatTimeoutKeepsIdleBelowIt) {
    auto a = advise_keepalive(Duration::seconds(120), Duration::seconds(30));
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->policy.idle, Duration::seconds(20));
    EXPECT_LE(a->worst_case, Duration::seconds(120));
    bool mentions_nat = false;
    for (const auto& n : a->notes) mentions_nat |= n.find("NAT") != std::string::npos;
    EXPECT_TRUE(mentions_nat);
}

TEST(KernelBudget, RefusesTargetsKeepaliveCannotMeet) {
    auto a = advise_keepalive(Duration::milliseconds(1500), std::nullopt);
    ASSERT_FALSE(a.ok());
    EXPECT_NE(a.error().message.find("heartbeats"), std::string::npos);
    EXPECT_FALSE(advise_keepalive(Duration::seconds(10), Duration::seconds(1)).ok());
}

TEST(KernelBudget, OneTargetDerivesEveryKnob) {
    auto plan = policy_for_budget(Duration::seconds(6));
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    EXPECT_EQ(plan->heartbeat_timeout, Duration::seconds(6));
    EXPECT_EQ(plan->heartbeat_interval, Duration::seconds(2));
    EXPECT_LE(plan->keepalive.budget(), Duration::seconds(6));
    EXPECT_EQ(plan->keepalive.user_timeout.mode, UserTimeout::Mode::automatic);
    EXPECT_EQ(plan->explanation.size(), 2u);

    auto fast = policy_for_budget(Duration::milliseconds(900));
    ASSERT_TRUE(fast.ok());
    EXPECT_EQ(fast->heartbeat_interval, Duration::milliseconds(300));
    EXPECT_LE(fast->keepalive.budget(), Duration::seconds(2));
    EXPECT_EQ(fast->explanation.size(), 3u);  // Says the kernel cannot follow.

    EXPECT_FALSE(policy_for_budget(Duration::milliseconds(100)).ok());
}

}  // namespace
}  // namespace lifeline
