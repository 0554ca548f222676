// PresencePublisher without Redis: what it sends when, and what replies mean
// for the local sessions. The fencing itself runs inside Redis and is tested
// against a real redis-server (tests/cli/presence_redis_test.cpp); here the
// replies are the ones those functions give.
#include "lifeline/engine/presence_publisher.hpp"

#include <gtest/gtest.h>

#include <set>

namespace lifeline {
namespace {

constexpr std::int64_t kUnixMs = 1'800'000'000'000;

RedisValue integer(std::int64_t v) {
    RedisValue r;
    r.type = RedisValue::Type::integer;
    r.integer = v;
    return r;
}
RedisValue array(std::vector<RedisValue> e) {
    RedisValue r;
    r.type = RedisValue::Type::array;
    r.elements = std::move(e);
    return r;
}
RedisValue online_reply(std::int64_t epoch) { return array({integer(epoch), RedisValue{}, integer(0)}); }

struct Rig {
    PresencePublisherConfig config = [] {
        PresencePublisherConfig c;
        c.gateway = "gw-a";
        c.ttl = Duration::seconds(3);
        c.batch = 10;
        c.buffer_limit = 3;
        return c;
    }();
    PresencePublisher p{config};
    Instant now = Instant::from_ns(1'000'000'000);

    // What it sends; a session's listing (HSET on this gateway's sessions, sent
    // before each admission) is answered at once, and what follows is included.
    std::vector<RedisCommand> take() {
        std::vector<RedisCommand> all;
        for (std::vector<RedisCommand> sent = p.take_commands(); !sent.empty(); sent = p.take_commands()) {
            for (RedisCommand& c : sent) {
                if (c.argv[0] == "HSET" && c.argv[1] == "lifeline:sessions:{gw-a}") p.on_reply(c.tag, integer(1));
                all.push_back(std::move(c));
            }
        }
        return all;
    }
    static std::vector<RedisCommand> named(const std::vector<RedisCommand>& all, const std::string& function) {
        std::vector<RedisCommand> out;
        for (const RedisCommand& c : all) {
            if (c.argv.size() > 1 && c.argv[1] == function) out.push_back(c);
        }
        return out;
    }
    // Connects, and answers the start-up commands (load, reap, heartbeat).
    void connect() {
        p.on_connected(now, kUnixMs);
        for (const RedisCommand& c : take())
            p.on_reply(c.tag, c.argv[1] == "lifeline_reap_list" ? array({integer(0)}) : RedisValue{});
    }
    // Admits `id` and answers its online with `epoch`.
    void admit(const std::string& id, std::uint64_t conn, std::int64_t epoch) {
        p.online(id, conn, "10.0.0.1:1000", kUnixMs);
        const std::vector<RedisCommand> sent = named(take(), "lifeline_online");
        ASSERT_EQ(sent.size(), 1u);
        p.on_reply(sent[0].tag, online_reply(epoch));
    }
    void take_notices_from_start() { p.take_notices(); }
    void advance(Duration d) {
        const Instant end = now + d;
        while (now < end) {
            now = std::min(end, std::max(now, p.next_timeout()));
            p.handle_timeout(now, kUnixMs);
            if (p.next_timeout() > end) now = end;
        }
    }
};

TEST(PresencePublisher, StartsByLoadingTheFunctionsAndEndingItsPreviousRun) {
    Rig r;
    r.p.on_connected(r.now, kUnixMs);
    const std::vector<RedisCommand> sent = r.take();
    ASSERT_GE(sent.size(), 3u);
    EXPECT_EQ(sent[0].argv[0], "FUNCTION");
    EXPECT_EQ(sent[0].argv[2], "REPLACE");
    EXPECT_TRUE(sent[0].every_node) << "every master of a cluster needs the functions";
    const std::vector<RedisCommand> reap = Rig::named(sent, "lifeline_reap_list");
    ASSERT_EQ(reap.size(), 1u);
    EXPECT_EQ(reap[0].argv[3], "lifeline:gateway:{gw-a}");
    EXPECT_EQ(reap[0].argv[4], "lifeline:sessions:{gw-a}:prev") << "what it ends: the previous run's, moved aside";
    EXPECT_EQ(reap[0].argv[8], "1") << "force: the previous run of this gateway is gone";
    EXPECT_EQ(reap[0].argv[10], "1") << "the first call moves the previous run's sessions aside";
}

TEST(PresencePublisher, AnOfflineCarriesTheEpochRedisGave) {
    Rig r;
    r.connect();
    r.admit("dev-1", 7, 42);
    r.p.offline("dev-1", 7, DisconnectReason::heartbeat_timeout, 3012, kUnixMs + 5000);
    const std::vector<RedisCommand> off = Rig::named(r.take(), "lifeline_offline");
    ASSERT_EQ(off.size(), 1u);
    EXPECT_EQ(off[0].argv[6], "dev-1");
    EXPECT_EQ(off[0].argv[7], "42");
    EXPECT_EQ(off[0].argv[8], "heartbeat_timeout");
    EXPECT_EQ(off[0].argv[9], "3012");
    EXPECT_EQ(off[0].route, "lifeline:{dev-1}");
    EXPECT_EQ(r.p.live(), 0u);
}

TEST(PresencePublisher, AnOfflineBeforeItsOnlinesReplyWaitsForTheEpoch) {
    Rig r;
    r.connect();
    r.p.online("dev-1", 7, "peer", kUnixMs);
    const std::vector<RedisCommand> on = Rig::named(r.take(), "lifeline_online");
    ASSERT_EQ(on.size(), 1u);
    r.p.offline("dev-1", 7, DisconnectReason::peer_closed, 0, kUnixMs + 10);
    EXPECT_TRUE(Rig::named(r.take(), "lifeline_offline").empty());
    r.p.on_reply(on[0].tag, online_reply(5));
    const std::vector<RedisCommand> off = Rig::named(r.take(), "lifeline_offline");
    ASSERT_EQ(off.size(), 1u);
    EXPECT_EQ(off[0].argv[7], "5");
}

TEST(PresencePublisher, RefreshesEveryEntryOncePerThirdOfTheTtlInBatches) {
    Rig r;
    r.connect();
    for (int i = 0; i < 100; ++i) r.admit("dev-" + std::to_string(i), static_cast<std::uint64_t>(i + 1), 1);
    r.take();
    std::multiset<std::string> refreshed;
    std::size_t calls = 0;
    const Instant start = r.now;
    while (r.now < start + Duration::seconds(1)) {  // ttl/3
        r.now = r.now + Duration::milliseconds(100);
        r.p.handle_timeout(r.now, kUnixMs);
        for (const RedisCommand& c : Rig::named(r.take(), "lifeline_refresh")) {
            ++calls;
            EXPECT_LE((c.argv.size() - 5) / 2, r.config.batch);
            for (std::size_t i = 5; i < c.argv.size(); i += 2) refreshed.insert(c.argv[i]);
        }
    }
    EXPECT_EQ(refreshed.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(refreshed.count("dev-" + std::to_string(i)), 1u) << i;
    EXPECT_LE(calls, 20u) << "batched: 100 entries over 10 ticks, at most 10 per call";
}

TEST(PresencePublisher, AFencedOutRefreshClosesThatSessionHere) {
    Rig r;
    r.connect();
    for (int i = 0; i < 20; ++i) r.admit("dev-" + std::to_string(i), static_cast<std::uint64_t>(i + 1), 3);
    r.take();
    r.advance(Duration::seconds(1));  // Two entries per 100 ms tick.
    const std::vector<RedisCommand> refresh = Rig::named(r.take(), "lifeline_refresh");
    ASSERT_FALSE(refresh.empty());
    // Redis says the second entry of the first batch lost its epoch meanwhile.
    const std::string lost_id = refresh[0].argv.size() > 7 ? refresh[0].argv[7] : "";
    ASSERT_FALSE(lost_id.empty());
    r.p.on_reply(refresh[0].tag, array({array({integer(2)}), array({})}));
    const std::vector<PresenceNotice> notices = r.p.take_notices();
    ASSERT_EQ(notices.size(), 1u);
    EXPECT_EQ(notices[0].kind, PresenceNotice::Kind::lost);
    EXPECT_EQ(notices[0].id, lost_id);
    EXPECT_EQ(r.p.live(), 19u);
}

TEST(PresencePublisher, ARecordRedisNoLongerHasIsSentWholeAgain) {
    Rig r;
    r.connect();
    for (int i = 0; i < 20; ++i) r.admit("dev-" + std::to_string(i), static_cast<std::uint64_t>(i + 1), 3);
    r.take();
    r.advance(Duration::milliseconds(100));
    const std::vector<RedisCommand> refresh = Rig::named(r.take(), "lifeline_refresh");
    ASSERT_EQ(refresh.size(), 1u);
    ASSERT_EQ(refresh[0].argv.size(), 9u) << "two entries: (id, epoch) each";
    r.p.on_reply(refresh[0].tag, array({array({}), array({integer(1)})}));  // The first one's record expired.
    const std::vector<RedisCommand> restore = Rig::named(r.take(), "lifeline_restore");
    ASSERT_EQ(restore.size(), 1u);
    ASSERT_EQ(restore[0].argv.size(), 11u) << "one entry, whole: id epoch conn peer since";
    EXPECT_EQ(restore[0].argv[6], refresh[0].argv[5]);
    EXPECT_EQ(restore[0].argv[9], "10.0.0.1:1000");
    EXPECT_TRUE(r.p.take_notices().empty());
}

TEST(PresencePublisher, AControlMessageClosesTheGhostOnlyAtItsEpoch) {
    Rig r;
    r.connect();
    r.admit("dev-1", 9, 6);
    r.p.on_control("dev-1 5");  // An older epoch: not this session.
    EXPECT_TRUE(r.p.take_notices().empty());
    r.p.on_control("dev-1 6");
    const std::vector<PresenceNotice> notices = r.p.take_notices();
    ASSERT_EQ(notices.size(), 1u);
    EXPECT_EQ(notices[0].kind, PresenceNotice::Kind::replaced);
    EXPECT_EQ(notices[0].conn, 9u);
    // Its own end afterwards sends nothing: Redis recorded it when the other gateway admitted the id.
    r.p.offline("dev-1", 9, DisconnectReason::session_replaced, 0, kUnixMs);
    EXPECT_TRUE(Rig::named(r.take(), "lifeline_offline").empty());
}

TEST(PresencePublisher, WhileRedisIsAwayOfflinesQueueUpToTheBoundAndDrainInOrder) {
    Rig r;
    r.connect();
    for (int i = 0; i < 5; ++i) r.admit("dev-" + std::to_string(i), static_cast<std::uint64_t>(i + 1), 1);
    r.p.on_disconnected();
    for (int i = 0; i < 5; ++i)
        r.p.offline("dev-" + std::to_string(i), static_cast<std::uint64_t>(i + 1), DisconnectReason::peer_reset, 0,
                    kUnixMs);
    EXPECT_TRUE(r.take().empty()) << "nothing is sent while Redis is away";
    EXPECT_EQ(r.p.queued(), 3u);
    EXPECT_EQ(r.p.counters().dropped, 2u);
    EXPECT_EQ(r.p.take_notices().size(), 2u) << "each drop is reported";
    r.p.on_connected(r.now, kUnixMs);
    const std::vector<RedisCommand> off = Rig::named(r.take(), "lifeline_offline");
    ASSERT_EQ(off.size(), 3u);
    EXPECT_EQ(off[0].argv[6], "dev-2");
    EXPECT_EQ(off[1].argv[6], "dev-3");
    EXPECT_EQ(off[2].argv[6], "dev-4");
}

TEST(PresencePublisher, OnReconnectTheLiveSetIsReassertedAndUnansweredOfflinesResent) {
    Rig r;
    r.connect();
    r.admit("kept", 1, 2);
    r.admit("gone", 2, 3);
    r.p.online("new", 3, "peer", kUnixMs);  // Its online is in flight when the link drops.
    r.p.offline("gone", 2, DisconnectReason::heartbeat_timeout, 1000, kUnixMs);
    r.take();
    r.p.on_disconnected();
    r.p.on_connected(r.now, kUnixMs);
    const std::vector<RedisCommand> sent = r.take();
    const std::vector<RedisCommand> on = Rig::named(sent, "lifeline_online");
    ASSERT_EQ(on.size(), 1u);
    EXPECT_EQ(on[0].argv[7], "new");
    // The queued offline first (an older epoch), then the live set written
    // whole (Redis may have come back empty), then what Redis never heard of.
    const std::vector<RedisCommand> restore = Rig::named(sent, "lifeline_restore");
    ASSERT_EQ(restore.size(), 1u);
    EXPECT_EQ(restore[0].argv[6], "kept");
    EXPECT_EQ(restore[0].argv.size(), 11u);
    EXPECT_LT(Rig::named(sent, "lifeline_offline").at(0).tag, restore[0].tag);
    EXPECT_LT(restore[0].tag, on[0].tag);
    const std::vector<RedisCommand> off = Rig::named(sent, "lifeline_offline");
    ASSERT_EQ(off.size(), 1u);
    EXPECT_EQ(off[0].argv[6], "gone");
    EXPECT_EQ(off[0].argv[7], "3");
}

TEST(PresencePublisher, AResentOnlineThatWasSupersededClosesTheSessionHere) {
    Rig r;
    r.connect();
    r.p.online("dev-1", 4, "peer", kUnixMs);
    r.take();
    r.p.on_disconnected();  // Its reply is lost with the connection.
    r.p.on_connected(r.now, kUnixMs);
    const std::vector<RedisCommand> again = Rig::named(r.take(), "lifeline_online");
    ASSERT_EQ(again.size(), 1u);
    r.take_notices_from_start();
    r.p.on_reply(again[0].tag, array({integer(5), RedisValue{}, integer(0), integer(1)}));
    const std::vector<PresenceNotice> notices = r.p.take_notices();
    ASSERT_EQ(notices.size(), 1u);
    EXPECT_EQ(notices[0].kind, PresenceNotice::Kind::replaced);
    EXPECT_EQ(notices[0].conn, 4u);
    EXPECT_EQ(r.p.live(), 0u);
}

TEST(PresencePublisher, AControlMessageBeforeTheOnlinesReplyStillClosesTheGhost) {
    Rig r;
    r.connect();
    r.p.online("dev-1", 4, "peer", kUnixMs);
    const std::vector<RedisCommand> on = Rig::named(r.take(), "lifeline_online");
    ASSERT_EQ(on.size(), 1u);
    r.p.on_control("dev-1 8");  // On the subscription's connection, ahead of the reply.
    EXPECT_TRUE(r.p.take_notices().empty());
    r.p.on_reply(on[0].tag, online_reply(8));
    const std::vector<PresenceNotice> notices = r.p.take_notices();
    ASSERT_EQ(notices.size(), 1u);
    EXPECT_EQ(notices[0].kind, PresenceNotice::Kind::replaced);
}

TEST(PresencePublisher, ASessionIsListedBeforeRedisAdmitsIt) {
    Rig r;
    r.connect();
    r.p.online("dev-1", 7, "peer", kUnixMs);
    const std::vector<RedisCommand> listed = r.p.take_commands();
    ASSERT_EQ(listed.size(), 1u) << "only the listing: a survivor must find the session if this gateway dies";
    EXPECT_EQ(listed[0].argv[0], "HSET");
    EXPECT_EQ(listed[0].route, "lifeline:sessions:{gw-a}");
    EXPECT_EQ(listed[0].argv[2], "dev-1");
    EXPECT_EQ(listed[0].argv[3], std::to_string(kUnixMs) + " 7") << "RUN CONN: this very session";
    r.p.on_reply(listed[0].tag, integer(1));
    EXPECT_EQ(Rig::named(r.p.take_commands(), "lifeline_online").size(), 1u);
}

RedisValue text(const std::string& s) {
    RedisValue v;
    v.type = RedisValue::Type::string;
    v.text = s;
    return v;
}

TEST(PresencePublisher, EventsLeftInAnOutboxAreCarriedToTheStreamBeforeTheSessionIsUnlisted) {
    Rig r;
    r.connect();
    r.admit("dev-1", 7, 42);
    r.p.offline("dev-1", 7, DisconnectReason::heartbeat_timeout, 3012, kUnixMs + 5000);
    const std::vector<RedisCommand> off = Rig::named(r.take(), "lifeline_offline");
    ASSERT_EQ(off.size(), 1u);
    // The stream is on another node: the function kept the event in the id's outbox.
    const std::string event = R"([85,"dev-1",["event","offline","id","dev-1"]])";
    r.p.on_reply(off[0].tag, array({integer(1), array({text(event)})}));
    std::vector<RedisCommand> sent = r.take();
    ASSERT_EQ(sent.size(), 1u) << "the event first; the session stays listed until the stream has it";
    EXPECT_EQ(sent[0].argv[1], "lifeline_emit");
    EXPECT_EQ(sent[0].route, "lifeline:offline");
    EXPECT_EQ(sent[0].argv.back(), event);
    r.p.on_reply(sent[0].tag, array({text("dev-1"), integer(85)}));
    sent = r.take();
    const std::vector<RedisCommand> ack = Rig::named(sent, "lifeline_ack");
    ASSERT_EQ(ack.size(), 1u);
    EXPECT_EQ(ack[0].route, "lifeline:{dev-1}");
    EXPECT_EQ(std::vector<std::string>(ack[0].argv.begin() + 3, ack[0].argv.end()),
              (std::vector<std::string>{"dev-1", "85"}));
    const std::vector<RedisCommand> unlisted = Rig::named(sent, "lifeline_unindex");
    ASSERT_EQ(unlisted.size(), 1u);
    EXPECT_EQ(unlisted[0].argv[3], "lifeline:sessions:{gw-a}");
    EXPECT_EQ(unlisted[0].argv[4], "dev-1");
}

TEST(PresencePublisher, OnAClusterABatchOnlyHoldsIdsOfTheNodeItGoesTo) {
    Rig r;
    std::vector<std::uint16_t> nodes(kRedisSlots);
    for (std::size_t slot = 0; slot < kRedisSlots; ++slot)
        nodes[slot] = static_cast<std::uint16_t>(slot * 3 / kRedisSlots);
    r.p.on_topology(nodes);
    r.connect();
    for (int i = 0; i < 30; ++i) r.admit("dev-" + std::to_string(i), static_cast<std::uint64_t>(i + 1), 1);
    r.take();
    std::set<std::uint16_t> used;
    std::size_t refreshed = 0;
    r.advance(Duration::seconds(1));
    for (const RedisCommand& c : Rig::named(r.take(), "lifeline_refresh")) {
        const std::uint16_t node = nodes[redis_key_slot(c.route)];
        used.insert(node);
        for (std::size_t i = 5; i < c.argv.size(); i += 2, ++refreshed)
            EXPECT_EQ(nodes[redis_key_slot("lifeline:{" + c.argv[i] + "}")], node) << c.argv[i];
    }
    EXPECT_EQ(refreshed, 30u);
    EXPECT_EQ(used.size(), 3u) << "30 ids over 3 nodes";
}

TEST(PresencePublisher, ADeadGatewaysSessionsAreEndedRoundByRound) {
    Rig r;
    r.connect();
    r.advance(Duration::seconds(3));  // One TTL: it looks for dead gateways.
    std::vector<RedisCommand> sent = r.take();
    std::vector<RedisCommand> lookup;
    for (const RedisCommand& c : sent)
        if (c.argv[0] == "HGETALL") lookup.push_back(c);
    ASSERT_EQ(lookup.size(), 1u);
    r.p.on_reply(lookup[0].tag, array({text("gw-b"), text(std::to_string(kUnixMs - 4000))}));
    std::vector<RedisCommand> list = Rig::named(r.take(), "lifeline_reap_list");
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].argv[4], "lifeline:sessions:{gw-b}");
    r.p.on_reply(list[0].tag, array({integer(2), text("b1"), text("1 4"), text("b2"), text("1 5")}));
    const std::vector<RedisCommand> ids = Rig::named(r.take(), "lifeline_reap_ids");
    ASSERT_EQ(ids.size(), 1u) << "one node";
    EXPECT_EQ(ids[0].argv[3], "gw-b");
    EXPECT_EQ(ids[0].argv[5], "4000") << "detected after: since its last heartbeat";
    r.p.on_reply(ids[0].tag, array({integer(2)}));  // Both ended; the stream was local.
    EXPECT_EQ(r.p.counters().reaped, 2u);
    const std::vector<RedisCommand> unlisted = Rig::named(r.take(), "lifeline_unindex");
    ASSERT_EQ(unlisted.size(), 1u);
    EXPECT_EQ(unlisted[0].argv.size(), 8u) << "both entries";
    r.p.on_reply(unlisted[0].tag, integer(1));
    list = Rig::named(r.take(), "lifeline_reap_list");
    ASSERT_EQ(list.size(), 1u) << "the next round";
    r.p.on_reply(list[0].tag, array({integer(0)}));
    sent = r.take();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].argv, (std::vector<std::string>{"HDEL", "lifeline:gateways", "gw-b"}));
}

TEST(PresencePublisher, AnErrorReplyBringsAResyncASecondLater) {
    Rig r;
    r.connect();
    r.p.online("dev-1", 7, "peer", kUnixMs);
    const std::vector<RedisCommand> on = Rig::named(r.take(), "lifeline_online");
    ASSERT_EQ(on.size(), 1u);
    RedisValue error;
    error.type = RedisValue::Type::error;
    error.text = "OOM command not allowed when used memory > 'maxmemory'";
    r.p.on_reply(on[0].tag, error);
    ASSERT_EQ(r.p.take_notices().size(), 1u) << "reported";
    r.advance(Duration::milliseconds(900));
    EXPECT_TRUE(Rig::named(r.take(), "lifeline_online").empty());
    r.advance(Duration::milliseconds(200));
    const std::vector<RedisCommand> again = Rig::named(r.take(), "lifeline_online");
    ASSERT_EQ(again.size(), 1u) << "sent again, on a stable connection";
    EXPECT_EQ(again[0].argv[7], "dev-1");
    EXPECT_EQ(r.p.counters().reconnects, 0u) << "a resync is not a reconnection";
}

TEST(PresencePublisher, TheSeenKeysShareTheStreamsSlot) {
    for (const std::string stream : {"lifeline:offline", "events{fleet}", "x"}) {
        const std::string prefix = presence_seen_prefix(stream);
        ASSERT_FALSE(prefix.empty()) << stream;
        EXPECT_EQ(redis_key_slot(prefix + "some-device"), redis_key_slot(stream)) << stream;
    }
    EXPECT_TRUE(presence_seen_prefix("a{}b").empty());
    EXPECT_TRUE(presence_seen_prefix("a}b").empty());
    // Redis Cluster specification's examples; the slots are what redis-server 7.0's CLUSTER KEYSLOT says.
    EXPECT_EQ(redis_key_slot("123456789"), 12739u);
    EXPECT_EQ(redis_key_slot("{user1000}.following"), redis_key_slot("{user1000}.followers"));
    EXPECT_EQ(redis_key_slot("foo{}{bar}"), 8363u) << "an empty tag: the whole key";
    EXPECT_EQ(redis_key_slot("foo{{bar}}zap"), 4015u) << "the tag is \"{bar\"";
    EXPECT_EQ(redis_key_slot("foo{bar}{zap}"), 5061u) << "the first tag only";
    EXPECT_EQ(redis_key_slot("lifeline:{dev-1}"), 2349u);
}

TEST(PresencePublisher, LooksForDeadGatewaysOnlyATtlAfterConnecting) {
    Rig r;
    r.connect();
    auto gateway_lookups = [&] {
        std::size_t n = 0;
        for (const RedisCommand& c : r.take()) n += c.argv[0] == "HGETALL";
        return n;
    };
    r.advance(Duration::milliseconds(2900));
    EXPECT_EQ(gateway_lookups(), 0u);
    r.advance(Duration::milliseconds(200));
    EXPECT_EQ(gateway_lookups(), 1u);
}

}  // namespace
}  // namespace lifeline
