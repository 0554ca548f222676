#include "lifeline/sys/socket_options.hpp"

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <system_error>

#include "loopback_pair.hpp"

namespace lifeline::sys {
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

TEST(SocketOptions, UserTimeoutAloneIsSetAndReadBack) {
    auto pair = make_loopback_pair();
    Result<Duration> kept = apply_user_timeout(pair.client.get(), Duration::milliseconds(1500));
    ASSERT_TRUE(kept.ok()) << kept.error().message;
    EXPECT_EQ(*kept, Duration::milliseconds(1500));
    EXPECT_EQ(read_keepalive(pair.client.get())->user_timeout, Duration::milliseconds(1500));
    EXPECT_EQ(*apply_user_timeout(pair.client.get(), Duration::zero()), Duration::zero());
    const Result<Duration> negative = apply_user_timeout(pair.client.get(), Duration::milliseconds(-1));
    ASSERT_FALSE(negative.ok());
    EXPECT_EQ(negative.error().code, Errc::invalid_argument);
}

TEST(SocketOptions, AnOptionTheKernelRefusesIsNamedWithItsErrno) {
    // A UDP socket has no TCP options: the kernel refuses the first one.
    const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(udp, 0);
    const Result<EffectiveKeepalive> r = apply_keepalive(udp, *KeepalivePolicy::parse("7s:3s:4"));
    ::close(udp);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::refused_by_kernel);
    EXPECT_NE(r.error().sys_errno, 0);
    EXPECT_NE(r.error().message.find("setsockopt(TCP_KEEPIDLE, 7)"), std::string::npos) << r.error().message;
}

TEST(SocketOptions, ABadDescriptorIsTheCallersErrorNotTheKernels) {
    const Result<EffectiveKeepalive> r = apply_keepalive(987654, *KeepalivePolicy::parse("7s:3s:4"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::system);
    EXPECT_EQ(r.error().error_code(), std::errc::bad_file_descriptor);
}

}  // namespace
}  // namespace lifeline::sys
