// The LIFELINE_* variables liblifeline_preload reads (src/preload/preload_config.hpp).
#include "preload/preload_config.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace lifeline::preload {
namespace {

Result<PreloadConfig> from(const std::map<std::string, std::string>& env) {
    return config_from_env([&](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

TEST(PreloadConfig, DetectWithinGivesThePlanOfPolicyForBudget) {
    Result<PreloadConfig> c = from({{"LIFELINE_DETECT_WITHIN", "10s"}});
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_LE(c->policy.budget(), Duration::seconds(10));
    EXPECT_EQ(c->policy.user_timeout.mode, UserTimeout::Mode::automatic);
    EXPECT_FALSE(c->override_program);
    EXPECT_TRUE(c->log_path.empty());
}

TEST(PreloadConfig, ExplicitKeepaliveWinsOverTheTargetAndUserTimeoutApplies) {
    Result<PreloadConfig> c = from({{"LIFELINE_DETECT_WITHIN", "10s"},
                                    {"LIFELINE_KEEPALIVE", "3s:1s:2"},
                                    {"LIFELINE_USER_TIMEOUT", "4s"},
                                    {"LIFELINE_OVERRIDE", "1"},
                                    {"LIFELINE_LOG", "/tmp/x.log"}});
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->policy.idle, Duration::seconds(3));
    EXPECT_EQ(c->policy.count, 2);
    EXPECT_EQ(c->policy.user_timeout_value(), Duration::seconds(4));
    EXPECT_TRUE(c->override_program);
    EXPECT_EQ(c->log_path, "/tmp/x.log");
}

TEST(PreloadConfig, NothingSetIsTheCommandLineDefault) {
    Result<PreloadConfig> c = from({});
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->policy.to_string(), KeepalivePolicy{}.to_string());
}

TEST(PreloadConfig, ErrorsNameTheVariable) {
    for (const auto& [name, value] : std::map<std::string, std::string>{{"LIFELINE_KEEPALIVE", "soon"},
                                                                        {"LIFELINE_DETECT_WITHIN", "1s"},
                                                                        {"LIFELINE_USER_TIMEOUT", "never"},
                                                                        {"LIFELINE_OVERRIDE", "maybe"}}) {
        Result<PreloadConfig> c = from({{name, value}});
        ASSERT_FALSE(c) << name;
        EXPECT_NE(c.error().message.find(name), std::string::npos) << c.error().message;
    }
}

TEST(PreloadConfig, KeepaliveOffWithAutoUserTimeoutIsOff) {
    Result<PreloadConfig> c = from({{"LIFELINE_KEEPALIVE", "off"}});
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_FALSE(c->policy.enabled);
    EXPECT_EQ(c->policy.user_timeout.mode, UserTimeout::Mode::off);
}

}  // namespace
}  // namespace lifeline::preload
