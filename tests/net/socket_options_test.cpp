#include "net/socket_options.hpp"

#include <gtest/gtest.h>
#include <netinet/tcp.h>

#include "loopback_pair.hpp"

namespace lifeline::net {
namespace {

using lifeline::testing::make_loopback_pair;

TEST(SocketOptions, AppliesPolicyAndReadsBackEffectiveValues) {
    auto pair = make_loopback_pair();
    KeepalivePolicy policy = *KeepalivePolicy::parse("7s:3s:4");
    Result<EffectiveKeepalive> applied = apply_keepalive(pair.client.get(), policy);
    ASSERT_TRUE(applied.ok()) << applied.error().message;
    EXPECT_TRUE(applied->enabled);
    EXPECT_EQ(applied->idle, Duration::seconds(7));
    EXPECT_EQ(applied->interval, Duration::seconds(3));
    EXPECT_EQ(applied->count, 4);
    EXPECT_EQ(applied->user_timeout, Duration::seconds(19));  // auto = 7 + 3 * 4
    EXPECT_EQ(applied->budget(), Duration::seconds(19));

    // Independently of our reader: the raw getsockopt values.
    int v = 0;
    socklen_t len = sizeof(v);
    ASSERT_EQ(::getsockopt(pair.client.get(), IPPROTO_TCP, TCP_KEEPIDLE, &v, &len), 0);
    EXPECT_EQ(v, 7);
    ASSERT_EQ(::getsockopt(pair.client.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &len), 0);
    EXPECT_EQ(v, 19'000);
}

TEST(SocketOptions, UserTimeoutOffAndFixed) {
    auto pair = make_loopback_pair();
    KeepalivePolicy policy;
    policy.user_timeout = UserTimeout::off();
    auto r = apply_keepalive(pair.client.get(), policy);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->user_timeout, Duration::zero());
    policy.user_timeout = UserTimeout::fixed(Duration::milliseconds(2500));
    r = apply_keepalive(pair.client.get(), policy);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->user_timeout, Duration::milliseconds(2500));
}

TEST(SocketOptions, DisabledTurnsKeepaliveOff) {
    auto pair = make_loopback_pair();
    ASSERT_TRUE(apply_keepalive(pair.client.get(), KeepalivePolicy{}).ok());
    auto r = apply_keepalive(pair.client.get(), KeepalivePolicy::disabled());
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->enabled);
    EXPECT_EQ(r->budget(), Duration::infinite());
}

TEST(SocketOptions, InvalidPolicyIsRefusedBeforeAnySyscall) {
    auto pair = make_loopback_pair();
    KeepalivePolicy policy;
    policy.count = 500;
    auto r = apply_keepalive(pair.client.get(), policy);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("TCP_KEEPCNT"), std::string::npos);
    EXPECT_NE(r.error().message.find("socket " + std::to_string(pair.client.get())), std::string::npos);
    // Nothing was changed: keepalive is still off.
    auto now = read_keepalive(pair.client.get());
    ASSERT_TRUE(now.ok());
    EXPECT_FALSE(now->enabled);
}

TEST(SocketOptions, SyscallErrorsCarryOptionSocketAndErrno) {
    auto r = read_keepalive(987654);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().sys_errno, EBADF);
    EXPECT_NE(r.error().message.find("SO_KEEPALIVE"), std::string::npos);
    EXPECT_NE(r.error().message.find("987654"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::net
