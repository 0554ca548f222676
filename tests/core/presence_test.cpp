// PresenceTable: online and offline by id, fenced by epoch, offline records
// kept for the retention and then forgotten.
#include "lifeline/engine/presence.hpp"

#include <gtest/gtest.h>

namespace lifeline {
namespace {

TEST(Presence, OnlineThenOfflineWithItsReason) {
    PresenceTable t;
    EXPECT_EQ(t.online("dev-1", 7, "10.0.0.2:4000", 1'000), 1u);
    std::optional<PresenceRecord> r = t.get("dev-1", 1'500);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->online);
    EXPECT_EQ(r->conn, 7u);
    EXPECT_EQ(r->since_ms, 1'000);
    EXPECT_EQ(t.online_count(), 1u);
    const PresenceTable::Offline o = t.offline("dev-1", 7, DisconnectReason::heartbeat_timeout, 2'000);
    EXPECT_TRUE(o.applied);
    EXPECT_EQ(o.epoch, 1u);
    r = t.get("dev-1", 2'500);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->online);
    EXPECT_EQ(r->since_ms, 2'000);
    EXPECT_EQ(r->last_reason, DisconnectReason::heartbeat_timeout);
    EXPECT_EQ(t.online_count(), 0u);
    EXPECT_FALSE(t.get("nobody", 2'500));
}

TEST(Presence, ALateOfflineFromAReplacedSessionChangesNothing) {
    PresenceTable t;
    t.online("dev-2", 1, "a", 0);
    EXPECT_EQ(t.online("dev-2", 2, "b", 10), 2u);  // Took over before the old one ended.
    const PresenceTable::Offline late = t.offline("dev-2", 1, DisconnectReason::session_replaced, 20);
    EXPECT_FALSE(late.applied);
    EXPECT_EQ(late.epoch, 1u);  // It still names the epoch that ended.
    std::optional<PresenceRecord> r = t.get("dev-2", 30);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->online);
    EXPECT_EQ(r->epoch, 2u);
    EXPECT_EQ(r->peer, "b");
    EXPECT_FALSE(r->last_reason);
    // Twice is once: the second offline for the same session is stale too.
    EXPECT_TRUE(t.offline("dev-2", 2, DisconnectReason::peer_closed, 40).applied);
    EXPECT_FALSE(t.offline("dev-2", 2, DisconnectReason::peer_closed, 50).applied);
}

TEST(Presence, OfflineRecordsAreForgottenAfterTheRetention) {
    PresenceTable t(Duration::seconds(10));
    t.online("old", 1, "", 0);
    t.offline("old", 1, DisconnectReason::peer_reset, 1'000);
    t.online("back", 2, "", 0);
    t.offline("back", 2, DisconnectReason::peer_reset, 2'000);
    t.online("back", 3, "", 5'000);  // Came back: its stale expiry entry must not erase it.
    EXPECT_TRUE(t.get("old", 10'999));
    EXPECT_FALSE(t.get("old", 11'000));
    std::optional<PresenceRecord> back = t.get("back", 60'000);
    ASSERT_TRUE(back);
    EXPECT_TRUE(back->online);
    EXPECT_EQ(t.list(60'000).size(), 1u);
}

TEST(Presence, TheOfflineCountIsBounded) {
    PresenceTable t(Duration::hours(24), 2);
    for (std::uint64_t i = 1; i <= 4; ++i) {
        const std::string id = "d" + std::to_string(i);
        t.online(id, i, "", 0);
        t.offline(id, i, DisconnectReason::peer_closed, static_cast<std::int64_t>(i));
    }
    EXPECT_FALSE(t.get("d1", 10));
    EXPECT_FALSE(t.get("d2", 10));
    EXPECT_TRUE(t.get("d3", 10));
    EXPECT_TRUE(t.get("d4", 10));
}

// The id is stored once (as the table's key) and short peers inline; what
// comes back is the same whatever the lengths.
TEST(Presence, IdsAndPeersOfAnyLengthComeBackAsGiven) {
    PresenceTable t;
    const std::string id = "device-50456d1e94dd80a2-18999";
    const std::string v4 = "255.255.255.255:65535";                         // 21: the longest IPv4 peer.
    const std::string v6 = "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:65535";  // Past the inline buffer.
    t.online(id, 1, v4, 0);
    t.online("short", 2, v6, 0);
    std::optional<PresenceRecord> a = t.get(id, 1);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->id, id);
    EXPECT_EQ(a->peer, v4);
    std::optional<PresenceRecord> b = t.get("short", 1);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->peer, v6);
    // A takeover from a short peer after a long one (and back) keeps each exactly.
    t.online("short", 3, "10.0.0.1:1", 2);
    EXPECT_EQ(t.get("short", 3)->peer, "10.0.0.1:1");
    t.online("short", 4, v6, 4);
    EXPECT_EQ(t.get("short", 5)->peer, v6);
    t.offline(id, 1, DisconnectReason::peer_closed, 6);
    const std::vector<PresenceRecord> all = t.list(7);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].id, "short");  // Online first.
    EXPECT_EQ(all[1].id, id);
    EXPECT_EQ(all[1].last_reason, DisconnectReason::peer_closed);
}

}  // namespace
}  // namespace lifeline
