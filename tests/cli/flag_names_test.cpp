#include "cli/flag_names.hpp"

#include <gtest/gtest.h>

#include "lifeline/client.hpp"
#include "lifeline/server.hpp"

namespace lifeline::cli {
namespace {

TEST(FlagNames, FieldsBecomeFlagsAsWholeWordsOnly) {
    EXPECT_EQ(with_flag_names("timeout (2s) must be longer than heartbeat (3s)", kServeFlags),
              "--timeout (2s) must be longer than --heartbeat (3s)");
    // max_timeout is one word: its "timeout" is not touched on its own.
    EXPECT_EQ(with_flag_names("max_timeout must be >= timeout", kServeFlags), "--max-timeout must be >= --timeout");
    EXPECT_EQ(with_flag_names("push_rate must be at most 1G", kServeFlags), "--push must be at most 1G");
    // Words that are not fields of this command stay: a plural, another command's field.
    EXPECT_EQ(with_flag_names("two heartbeats; count", kServeFlags), "two heartbeats; count");
    EXPECT_EQ(with_flag_names("count must be 1..20000", kConnectFlags), "--count must be 1..20000");
    // What the user typed, quoted in a message, is theirs: "http://" stays "http://".
    EXPECT_EQ(with_flag_names("presence_redis: \"http://h\": not a redis:// URL", kServeFlags),
              "--presence: \"http://h\": not a redis:// URL");
}

TEST(FlagNames, PresenceOptionsAreCheckedAndNamedByTheirFlags) {
    ServerOptions s;
    s.presence_redis = "redis://127.0.0.1:6379";
    s.presence_gateway = "gw {1}";
    const Result<void> v = s.validate();
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(with_flag_names(v.error().message, kServeFlags).rfind("--gateway must not contain", 0), 0u)
        << v.error().message;
    s.presence_gateway = "gw-1";
    s.presence_ttl = Duration::milliseconds(500);
    ASSERT_FALSE(s.validate().ok());
    s.presence_ttl = Duration::seconds(30);
    s.presence_redis = "redis://127.0.0.1:99999";
    ASSERT_FALSE(s.validate().ok());
    s.presence_redis = "redis://127.0.0.1:6379/2";
    EXPECT_TRUE(s.validate().ok()) << s.validate().error().message;
}

TEST(FlagNames, LibraryValidationNamesFieldsAndTheCliShowsFlags) {
    ServerOptions s;
    s.min_interval = Duration::seconds(5);  // Longer than the heartbeat.
    const Result<void> v = s.validate();
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.error().code, Errc::invalid_argument);
    EXPECT_EQ(v.error().message.find("--"), std::string::npos) << v.error().message;
    EXPECT_NE(with_flag_names(v.error().message, kServeFlags).find("--min-interval"), std::string::npos);

    ClientOptions c;
    c.count = 0;
    const Result<void> cv = c.validate();
    ASSERT_FALSE(cv.ok());
    EXPECT_EQ(cv.error().message.find("--"), std::string::npos) << cv.error().message;
    EXPECT_EQ(with_flag_names(cv.error().message, kConnectFlags).rfind("--count must be", 0), 0u);
}

TEST(FlagNames, CoalesceIsBoundedAndNamedByItsFlag) {
    ServerOptions s;
    EXPECT_EQ(s.coalesce, Duration::milliseconds(1));  // On by default in a server.
    s.coalesce = Duration::zero();
    EXPECT_TRUE(s.validate().ok());
    for (const Duration bad : {Duration::milliseconds(-1), Duration::milliseconds(101)}) {
        s.coalesce = bad;
        const Result<void> v = s.validate();
        ASSERT_FALSE(v.ok());
        EXPECT_EQ(with_flag_names(v.error().message, kServeFlags), "--coalesce must be in [0, 100ms]");
    }
}

}  // namespace
}  // namespace lifeline::cli
