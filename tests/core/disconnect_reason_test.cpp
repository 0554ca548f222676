#include "lifeline/disconnect_reason.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace lifeline {
namespace {

TEST(DisconnectReason, NamesAreStableSnakeCaseAndRoundTrip) {
    std::set<std::string> names;
    for (DisconnectReason r : kAllDisconnectReasons) {
        const std::string name(to_string(r));
        EXPECT_TRUE(names.insert(name).second) << "duplicate name " << name;
        for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << name;
        EXPECT_EQ(parse_disconnect_reason(name), r);
    }
    EXPECT_EQ(names.size(), 14u);
    EXPECT_EQ(to_string(DisconnectReason::gateway_lost), "gateway_lost");
    EXPECT_EQ(to_string(DisconnectReason::heartbeat_timeout), "heartbeat_timeout");
    EXPECT_EQ(to_string(DisconnectReason::slow_consumer), "slow_consumer");
    EXPECT_FALSE(parse_disconnect_reason("dead").has_value());
}

}  // namespace
}  // namespace lifeline
