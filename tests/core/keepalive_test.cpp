#include "lifeline/keepalive.hpp"

#include <gtest/gtest.h>

namespace lifeline {
namespace {

TEST(KeepalivePolicy, DefaultIsValidAndUserTimeoutAutoIsTheBudget) {
    KeepalivePolicy p;
    EXPECT_TRUE(p.validate().ok());
    EXPECT_EQ(p.budget(), Duration::seconds(16));  // 10 + 2 * 3
    EXPECT_EQ(p.user_timeout_value(), Duration::seconds(16));
    EXPECT_EQ(p.to_string(), "10s:2s:3 user-timeout=auto(16s)");
}

TEST(KeepalivePolicy, RejectsOutOfRangeNamingOptionAndRange) {
    KeepalivePolicy p;
    p.idle = Duration::seconds(40000);
    auto r = p.validate();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("TCP_KEEPIDLE"), std::string::npos);
    EXPECT_NE(r.error().message.find("32767s"), std::string::npos);

    p = {};
    p.interval = Duration::zero();
    EXPECT_NE(p.validate().error().message.find("TCP_KEEPINTVL"), std::string::npos);

    p = {};
    p.count = 128;
    r = p.validate();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("TCP_KEEPCNT"), std::string::npos);
    EXPECT_NE(r.error().message.find("127"), std::string::npos);

    p = {};
    p.idle = Duration::milliseconds(1500);  // Never silently rounded.
    EXPECT_NE(p.validate().error().message.find("whole number of seconds"), std::string::npos);

    p = {};
    p.user_timeout = UserTimeout::fixed(Duration::microseconds(1500));
    EXPECT_NE(p.validate().error().message.find("TCP_USER_TIMEOUT"), std::string::npos);
}

TEST(KeepalivePolicy, DisabledWithAutoUserTimeoutIsAnError) {
    KeepalivePolicy p = KeepalivePolicy::disabled();
    EXPECT_TRUE(p.validate().ok());
    EXPECT_EQ(p.budget(), Duration::zero());
    p.user_timeout = UserTimeout::automatic();
    EXPECT_FALSE(p.validate().ok());
    p.user_timeout = UserTimeout::fixed(Duration::seconds(5));
    EXPECT_TRUE(p.validate().ok());
    EXPECT_EQ(p.user_timeout_value(), Duration::seconds(5));
}

TEST(KeepalivePolicy, ParsesSpecs) {
    auto p = KeepalivePolicy::parse("1s:1s:2");
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_EQ(p->idle, Duration::seconds(1));
    EXPECT_EQ(p->count, 2);
    EXPECT_EQ(p->budget(), Duration::seconds(3));
    EXPECT_FALSE(KeepalivePolicy::parse("off")->enabled);
    for (const char* bad : {"", "10s", "10s:2s", "10s:2s:x", "10s:2s:0", "10:2:3", "10s:2s:3:4", "1.5s:1s:1"}) {
        auto r = KeepalivePolicy::parse(bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_NE(r.error().message.find("IDLE:INTERVAL:COUNT"), std::string::npos) << r.error().message;
    }
}

TEST(KeepalivePolicy, ParsesTheTwoFlagsTogether) {
    auto p = KeepalivePolicy::parse("7s:1s:3", "auto");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->user_timeout_value(), Duration::seconds(10));
    auto off = KeepalivePolicy::parse("off", "auto");
    ASSERT_TRUE(off.ok());
    EXPECT_EQ(off->user_timeout.mode, UserTimeout::Mode::off);  // auto follows keepalive.
    EXPECT_EQ(KeepalivePolicy::parse("off", "5s")->user_timeout_value(), Duration::seconds(5));
    // The library names the field; the CLI turns it into the flag (cli/flag_names).
    EXPECT_EQ(KeepalivePolicy::parse("7s:1s", "auto").error().message.rfind("keepalive: ", 0), 0u);
    EXPECT_EQ(KeepalivePolicy::parse("7s:1s:3", "soon").error().message.rfind("user_timeout: ", 0), 0u);
    EXPECT_EQ(KeepalivePolicy::parse("7s:1s:3", "soon").error().message.find("--"), std::string::npos);
}

TEST(UserTimeout, Parses) {
    EXPECT_EQ(UserTimeout::parse("auto")->mode, UserTimeout::Mode::automatic);
    EXPECT_EQ(UserTimeout::parse("off")->mode, UserTimeout::Mode::off);
    EXPECT_EQ(UserTimeout::parse("15s")->value, Duration::seconds(15));
    EXPECT_FALSE(UserTimeout::parse("soon").ok());
}

}  // namespace
}  // namespace lifeline
