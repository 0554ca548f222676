// SessionDirectory: the takeover rule, derived resume tokens, presence fenced
// by epoch and kept for the retention, and ids stored once (pinned while
// referred to).
#include "lifeline/engine/session_directory.hpp"

#include <gtest/gtest.h>

#include <string>

namespace lifeline {
namespace {

SessionDirectoryConfig config(Duration retention = Duration::hours(24), std::size_t max_offline = 1'000'000) {
    SessionDirectoryConfig c;
    c.retention = retention;
    c.max_offline = max_offline;
    c.token_key.fill(7);
    return c;
}

SessionHolder holder(std::uint64_t conn) { return {0, static_cast<std::uint32_t>(conn), conn}; }

std::string text(const ResumeToken& t) { return std::string(reinterpret_cast<const char*>(t.data()), t.size()); }

// Admits and, like a connection that ends, goes offline, releases and unpins.
void end(SessionDirectory& d, std::string_view id, std::uint64_t conn, std::int64_t now_ms,
         DisconnectReason reason = DisconnectReason::peer_closed) {
    d.offline(id, conn, reason, now_ms);
    d.release(id, holder(conn));
    d.unpin(id);
}

TEST(SessionDirectory, AFreeIdMayBeTakenAHeldOneOnlyWithItsHoldersToken) {
    SessionDirectory d(config());
    EXPECT_TRUE(d.check("dev", "").may_take_over());
    const ResumeToken first = d.token_for("dev", 1);
    EXPECT_FALSE(d.admit("dev", holder(1), "10.0.0.1:1", 0).replaced);
    EXPECT_TRUE(d.check("dev", "").in_use);
    EXPECT_FALSE(d.check("dev", "").may_take_over());
    ResumeToken wrong = first;
    wrong.back() ^= 1;  // Differs in the last bit only.
    EXPECT_FALSE(d.check("dev", text(wrong)).may_take_over());
    EXPECT_FALSE(d.check("dev", text(first).substr(0, 15)).may_take_over());
    EXPECT_TRUE(d.check("dev", text(first)).may_take_over());
    // Tokens differ by connection and by id; taking over spends the old one.
    EXPECT_NE(d.token_for("dev", 2), first);
    EXPECT_NE(d.token_for("dew", 1), first);
    EXPECT_EQ(d.admit("dev", holder(2), "10.0.0.1:2", 1).replaced, holder(1));
    EXPECT_FALSE(d.check("dev", text(first)).token_valid);
    EXPECT_TRUE(d.check("dev", text(d.token_for("dev", 2))).token_valid);
    EXPECT_EQ(d.find("dev"), holder(2));
}

TEST(SessionDirectory, TokensDependOnTheKey) {
    SessionDirectoryConfig other = config();
    other.token_key.fill(8);
    EXPECT_NE(SessionDirectory(config()).token_for("dev", 1), SessionDirectory(other).token_for("dev", 1));
    EXPECT_EQ(SessionDirectory(config()).token_for("dev", 1), SessionDirectory(config()).token_for("dev", 1));
}

TEST(SessionDirectory, OnlyTheCurrentHolderReleasesTheId) {
    SessionDirectoryConfig c = config();
    c.presence = false;
    SessionDirectory d(c);
    d.admit("dev", holder(1), "", 0);
    d.admit("dev", holder(2), "", 0);
    EXPECT_FALSE(d.release("dev", holder(1)));  // The replaced one closing later frees nothing.
    d.unpin("dev");
    EXPECT_EQ(d.find("dev"), holder(2));
    EXPECT_TRUE(d.release("dev", holder(2)));
    EXPECT_FALSE(d.find("dev"));
    EXPECT_EQ(d.size(), 1u);  // Still pinned by the second admission.
    d.unpin("dev");
    EXPECT_EQ(d.size(), 0u);
    EXPECT_FALSE(d.presence("dev", 0));  // No presence kept.
}

TEST(SessionDirectory, AStoredIdStaysWhilePinnedAndIsFreedAfter) {
    SessionDirectoryConfig c = config();
    c.presence = false;
    SessionDirectory d(c);
    const std::string long_id(200, 'x');  // Past the entry's inline bytes: on the heap.
    const SessionDirectory::Admitted a = d.admit("device-50456d1e94dd80a2-18999", holder(1), "", 0);
    const SessionDirectory::Admitted b = d.admit(long_id, holder(2), "", 0);
    EXPECT_EQ(stored_id_text(a.stored), "device-50456d1e94dd80a2-18999");
    EXPECT_EQ(stored_id_text(b.stored), long_id);
    // Released but pinned: the bytes are still there, whatever else comes and goes.
    d.release(long_id, holder(2));
    for (std::uint64_t i = 0; i < 5000; ++i) {
        d.admit(std::to_string(i), holder(10 + i), "", 0);
        if (i % 2 == 0) end(d, std::to_string(i), 10 + i, 0);
    }
    EXPECT_EQ(stored_id_text(b.stored), long_id);
    EXPECT_EQ(stored_id_text(a.stored), "device-50456d1e94dd80a2-18999");
    d.unpin(long_id);
    EXPECT_EQ(d.size(), 2501u);
}

TEST(SessionDirectory, ManyIdsComeAndGoAndAreAllFound) {
    // 60,000: the index (32,768 slots at first, load at most 3/4) grows twice.
    constexpr std::uint64_t kIds = 60'000;
    SessionDirectory d(config(Duration::zero()));
    for (std::uint64_t i = 0; i < kIds; ++i) d.admit("id-" + std::to_string(i), holder(i), "1.2.3.4:5", 0);
    for (std::uint64_t i = 0; i < kIds; i += 2) end(d, "id-" + std::to_string(i), i, 1);
    EXPECT_EQ(d.size(), kIds / 2);
    for (std::uint64_t i = 0; i < kIds; ++i) {
        EXPECT_EQ(d.find("id-" + std::to_string(i)).has_value(), i % 2 == 1) << i;
    }
    EXPECT_EQ(d.online_count(), kIds / 2);
}

// ---- Presence ----------------------------------------------------------------------

TEST(SessionDirectory, OnlineThenOfflineWithItsReason) {
    SessionDirectory d(config());
    EXPECT_EQ(d.admit("dev-1", holder(7), "10.0.0.2:4000", 1'000).epoch, 1u);
    std::optional<PresenceRecord> r = d.presence("dev-1", 1'500);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->online);
    EXPECT_EQ(r->conn, 7u);
    EXPECT_EQ(r->peer, "10.0.0.2:4000");
    EXPECT_EQ(r->since_ms, 1'000);
    EXPECT_EQ(d.online_count(), 1u);
    const PresenceOffline o = d.offline("dev-1", 7, DisconnectReason::heartbeat_timeout, 2'000);
    EXPECT_TRUE(o.applied);
    EXPECT_EQ(o.epoch, 1u);
    d.release("dev-1", holder(7));
    d.unpin("dev-1");
    r = d.presence("dev-1", 2'500);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->online);
    EXPECT_EQ(r->since_ms, 2'000);
    EXPECT_EQ(r->conn, 7u);
    EXPECT_EQ(r->last_reason, DisconnectReason::heartbeat_timeout);
    EXPECT_EQ(d.online_count(), 0u);
    EXPECT_FALSE(d.presence("nobody", 2'500));
    EXPECT_FALSE(d.find("dev-1"));
}

TEST(SessionDirectory, ALateOfflineFromAReplacedSessionChangesNothing) {
    SessionDirectory d(config());
    d.admit("dev-2", holder(1), "a", 0);
    EXPECT_EQ(d.admit("dev-2", holder(2), "b", 10).epoch, 2u);  // Took over before the old one ended.
    const PresenceOffline late = d.offline("dev-2", 1, DisconnectReason::session_replaced, 20);
    EXPECT_FALSE(late.applied);
    EXPECT_EQ(late.epoch, 1u);  // It still names the epoch that ended.
    std::optional<PresenceRecord> r = d.presence("dev-2", 30);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->online);
    EXPECT_EQ(r->epoch, 2u);
    EXPECT_EQ(r->peer, "b");
    EXPECT_FALSE(r->last_reason);
    // Twice is once: the second offline for the same session is stale too.
    EXPECT_TRUE(d.offline("dev-2", 2, DisconnectReason::peer_closed, 40).applied);
    EXPECT_FALSE(d.offline("dev-2", 2, DisconnectReason::peer_closed, 50).applied);
}

// The other order: the old session's offline arrives before the comeback.
TEST(SessionDirectory, AnOfflineBeforeTheComebackAppliesAndTheComebackIsANewEpoch) {
    SessionDirectory d(config());
    d.admit("dev-3", holder(1), "a", 0);
    const PresenceOffline first = d.offline("dev-3", 1, DisconnectReason::peer_reset, 10);
    EXPECT_TRUE(first.applied);
    EXPECT_EQ(first.epoch, 1u);
    d.release("dev-3", holder(1));
    EXPECT_EQ(d.admit("dev-3", holder(2), "b", 20).epoch, 2u);
    EXPECT_FALSE(d.offline("dev-3", 1, DisconnectReason::peer_reset, 30).applied);  // Its own, again: stale.
    std::optional<PresenceRecord> r = d.presence("dev-3", 40);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->online);
    EXPECT_EQ(r->epoch, 2u);
    EXPECT_EQ(r->conn, 2u);
    EXPECT_EQ(r->last_reason, DisconnectReason::peer_reset);  // Why it last went offline.
    // A connection that never held the id (one refused) was never online: epoch 0.
    const PresenceOffline refused = d.offline("dev-3", 9, DisconnectReason::rejected, 50);
    EXPECT_FALSE(refused.applied);
    EXPECT_EQ(refused.epoch, 0u);
    EXPECT_EQ(d.online_count(), 1u);
}

TEST(SessionDirectory, OfflineRecordsAreForgottenAfterTheRetention) {
    SessionDirectory d(config(Duration::seconds(10)));
    d.admit("old", holder(1), "", 0);
    end(d, "old", 1, 1'000, DisconnectReason::peer_reset);
    d.admit("back", holder(2), "", 0);
    end(d, "back", 2, 2'000, DisconnectReason::peer_reset);
    d.admit("back", holder(3), "", 5'000);  // Came back: its stale expiry entry must not erase it.
    EXPECT_TRUE(d.presence("old", 10'999));
    EXPECT_FALSE(d.presence("old", 11'000));
    std::optional<PresenceRecord> back = d.presence("back", 60'000);
    ASSERT_TRUE(back);
    EXPECT_TRUE(back->online);
    EXPECT_EQ(back->epoch, 2u);
    EXPECT_EQ(d.presence_list(60'000).size(), 1u);
    EXPECT_EQ(d.size(), 1u);  // "old" is gone altogether.
}

TEST(SessionDirectory, AForgottenRecordStartsAgainAtEpochOneEvenWhilePinned) {
    SessionDirectory d(config(Duration::seconds(1)));
    d.admit("dev", holder(1), "", 0);
    d.offline("dev", 1, DisconnectReason::peer_closed, 0);
    d.release("dev", holder(1));  // Still pinned: the connection object lingers.
    EXPECT_FALSE(d.presence("dev", 5'000));
    EXPECT_EQ(d.admit("dev", holder(2), "", 5'000).epoch, 1u);
    d.unpin("dev");
    EXPECT_TRUE(d.find("dev"));
}

TEST(SessionDirectory, TheOfflineCountIsBounded) {
    SessionDirectory d(config(Duration::hours(24), 2));
    for (std::uint64_t i = 1; i <= 4; ++i) {
        const std::string id = "d" + std::to_string(i);
        d.admit(id, holder(i), "", 0);
        end(d, id, i, static_cast<std::int64_t>(i));
    }
    EXPECT_FALSE(d.presence("d1", 10));
    EXPECT_FALSE(d.presence("d2", 10));
    EXPECT_TRUE(d.presence("d3", 10));
    EXPECT_TRUE(d.presence("d4", 10));
    EXPECT_EQ(d.size(), 2u);
}

TEST(SessionDirectory, IdsAndPeersOfAnyLengthComeBackAsGiven) {
    SessionDirectory d(config());
    const std::string id = "device-50456d1e94dd80a2-18999";
    const std::string v4 = "255.255.255.255:65535";
    const std::string v6 = "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:65535";
    d.admit(id, holder(1), v4, 0);
    d.admit("short", holder(2), v6, 0);
    EXPECT_EQ(d.presence(id, 1)->id, id);
    EXPECT_EQ(d.presence(id, 1)->peer, v4);
    EXPECT_EQ(d.presence("short", 1)->peer, v6);
    d.admit("short", holder(3), "10.0.0.1:1", 2);
    EXPECT_EQ(d.presence("short", 3)->peer, "10.0.0.1:1");
    d.admit("short", holder(4), v6, 4);
    EXPECT_EQ(d.presence("short", 5)->peer, v6);
    // Text that only looks like IPv4 comes back as it was given.
    for (const std::string odd : {"01.2.3.4:5", "1.2.3.4:05", "1.2.3.4", "1.2.3.256:1", "1.2.3.4:70000", ""}) {
        d.admit("odd", holder(5), odd, 5);
        EXPECT_EQ(d.presence("odd", 5)->peer, odd);
    }
    d.offline(id, 1, DisconnectReason::peer_closed, 6);
    const std::vector<PresenceRecord> all = d.presence_list(7);
    ASSERT_EQ(all.size(), 3u);
    EXPECT_TRUE(all[0].online);
    EXPECT_TRUE(all[1].online);
    EXPECT_EQ(all[2].id, id);
    EXPECT_EQ(all[2].last_reason, DisconnectReason::peer_closed);
}

}  // namespace
}  // namespace lifeline
