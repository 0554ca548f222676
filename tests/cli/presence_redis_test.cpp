// Fleet presence on a real redis-server (started by the test on a free
// loopback port): two `lifeline serve --presence` gateways and `lifeline
// connect` clients, all child processes. Each client shows on its gateway; a
// stopped client goes offline with heartbeat_timeout; a SIGKILLed gateway's
// sessions go offline as gateway_lost (each once) through the survivor; a
// client that moves to the other gateway closes its ghost with
// session_replaced and the stream has exactly one offline for it; a late
// offline replayed from the old epoch changes nothing; and Redis killed and
// restarted empty, or paused past the TTL, converges to the truth with every
// id's events in epoch order and no duplicates.
//
// Waiting is on events: the gateways' event lines, and the stream itself
// (XREAD BLOCK through PresenceReader), each with a deadline.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lifeline/engine/presence_publisher.hpp"
#include "lifeline/presence_reader.hpp"
#include "support/bounds.hpp"
#include "support/child_process.hpp"
#include "support/presence_stream.hpp"
#include "support/redis_cluster.hpp"
#include "support/redis_server.hpp"

namespace lifeline {
namespace {

using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using lifeline::testing::RedisServer;
using lifeline::testing::unix_ms;
using namespace std::chrono_literals;

constexpr std::int64_t kTtlMs = 3000;  // --presence-ttl: refreshes and gateway heartbeats every 1 s.
constexpr std::int64_t kIntervalMs = kTtlMs / 3;
constexpr std::int64_t kTimeoutMs = 1000;  // The detection budget of clients and gateways.

// Two gateways and their clients on one Redis: a redis-server or a
// three-master cluster (RedisCluster), whichever the fixture starts.
class Fleet : public ::testing::Test {
protected:
    void start(bool cluster) {
        if (cluster)
            cluster_ = std::make_unique<testing::RedisCluster>();
        else
            redis_ = std::make_unique<RedisServer>();
        Result<PresenceReader> reader = PresenceReader::connect(url());
        ASSERT_TRUE(reader) << reader.error().message;
        reader_ = std::make_unique<PresenceReader>(std::move(*reader));
        stream_ = std::make_unique<testing::PresenceStream>(*reader_);
    }

    ChildProcess& gateway(const std::string& name) {
        auto g = std::make_unique<ChildProcess>(std::vector<std::string>{
            LIFELINE_BINARY, "serve", "--listen", "127.0.0.1:0", "--heartbeat", "200ms", "--timeout", "1s",
            "--presence", url(), "--gateway", name, "--presence-ttl", "3s"});
        const std::optional<Json> listening = g->wait_for_event("listening", 10s);
        EXPECT_TRUE(listening) << name << " did not start";
        const std::string address = listening ? listening->value("address", "") : "";
        ports_[name] = address.substr(address.rfind(':') + 1);
        return *(gateways_[name] = std::move(g));
    }

    ChildProcess& client(const std::string& id, const std::string& gw) {
        clients_.push_back(std::make_unique<ChildProcess>(
            std::vector<std::string>{LIFELINE_BINARY, "connect", "127.0.0.1:" + ports_[gw], "--id", id, "--heartbeat",
                                     "200ms", "--timeout", "1s"}));
        EXPECT_TRUE(clients_.back()->wait_for_event("hello", 10s)) << id << " did not open on " << gw;
        return *clients_.back();
    }

    FleetPresence record(const std::string& id) {
        Result<std::optional<FleetPresence>> r = reader_->get(id);
        EXPECT_TRUE(r) << r.error().message;
        EXPECT_TRUE(r && *r) << id << " has no record";
        return r && *r ? **r : FleetPresence{};
    }

    // Until the gateway's FUNCTION LOAD has run on every master, an FCALL the
    // test sends itself can fail with "Function not found" (`listening` comes
    // before the presence connection). Redis has no event for it: polled,
    // with a deadline.
    void await_library_on_every_node() {
        std::vector<RedisServer*> nodes;
        if (cluster_) {
            for (int i = 0; i < testing::RedisCluster::kMasters; ++i) nodes.push_back(&cluster_->node(i));
        } else {
            nodes.push_back(redis_.get());
        }
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        for (RedisServer* node : nodes) {
            while (node->cli({"FUNCTION", "LIST", "LIBRARYNAME", "lifeline"}).find("lifeline") == std::string::npos) {
                ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the gateway never loaded its functions";
                std::this_thread::sleep_for(20ms);
            }
        }
    }

    std::string url() const { return cluster_ ? cluster_->url() : redis_->url(); }
    std::string cli(const std::vector<std::string>& args) const {
        return cluster_ ? cluster_->cli(args) : redis_->cli(args);
    }

    std::unique_ptr<RedisServer> redis_;  // One of these two.
    std::unique_ptr<testing::RedisCluster> cluster_;
    std::unique_ptr<PresenceReader> reader_;
    std::map<std::string, std::unique_ptr<ChildProcess>> gateways_;
    std::map<std::string, std::string> ports_;
    std::vector<std::unique_ptr<ChildProcess>> clients_;
    std::unique_ptr<testing::PresenceStream> stream_;
};

// Only a redis-server: these tests kill, restart and pause it.
class PresenceRedis : public Fleet {
protected:
    void SetUp() override { start(false); }
};

// Both: the same tests on one redis-server and on a Redis Cluster.
class PresenceFleet : public Fleet, public ::testing::WithParamInterface<std::string> {
protected:
    void SetUp() override { start(GetParam() == "cluster"); }
};
INSTANTIATE_TEST_SUITE_P(Redis, PresenceFleet, ::testing::Values("server", "cluster"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST_P(PresenceFleet, EachClientShowsOnItsGatewayAndAStoppedOneGoesOfflineWithItsReason) {
    gateway("gw-a");
    gateway("gw-b");
    ChildProcess& a1 = client("a1", "gw-a");
    client("b1", "gw-b");
    if (cluster_) {
        // b1 shares the stream's node (its events are appended in its own
        // function); a1 does not (they wait in its outbox and are carried).
        const int stream_node = cluster_->node_of_slot(redis_key_slot("lifeline:offline"));
        ASSERT_GE(stream_node, 0) << "CLUSTER SLOTS not understood";
        EXPECT_EQ(cluster_->node_of_slot(redis_key_slot("lifeline:{b1}")), stream_node);
        EXPECT_NE(cluster_->node_of_slot(redis_key_slot("lifeline:{a1}")), stream_node);
    }
    ASSERT_TRUE(stream_->await_event("online", "a1", 5s));
    ASSERT_TRUE(stream_->await_event("online", "b1", 5s));
    EXPECT_EQ(record("a1").gateway, "gw-a");
    EXPECT_TRUE(record("a1").online);
    const Result<std::vector<FleetPresence>> on_b = reader_->list("gw-b");
    ASSERT_TRUE(on_b);
    ASSERT_EQ(on_b->size(), 1u);
    EXPECT_EQ(on_b->front().id, "b1");

    const std::int64_t stopped_at = unix_ms();
    a1.signal(SIGSTOP);
    const auto offline = stream_->await_event(
        "offline", "a1", std::chrono::milliseconds(kTimeoutMs + kIntervalMs) + testing::kSchedulingSlack * 2);
    a1.signal(SIGCONT);
    ASSERT_TRUE(offline) << "no offline for the stopped client";
    EXPECT_EQ(offline->reason, "heartbeat_timeout");
    EXPECT_EQ(offline->gateway, "gw-a");
    EXPECT_GE(offline->detected_after_ms, kTimeoutMs);
    EXPECT_LE(offline->detected_after_ms, kTimeoutMs + testing::kSchedulingSlackMs);
    // Staleness: from the stop to the stream, within the budget and a refresh interval.
    EXPECT_LE(offline->time_ms - stopped_at, kTimeoutMs + kIntervalMs + testing::kSchedulingSlackMs);
    const FleetPresence gone = record("a1");
    EXPECT_FALSE(gone.online);
    EXPECT_EQ(gone.last_reason, "heartbeat_timeout");
    EXPECT_TRUE(record("b1").online);
    stream_->expect_epoch_order_without_duplicates();
}

TEST_P(PresenceFleet, AKilledGatewaysSessionsGoOfflineOnceAsGatewayLost) {
    gateway("gw-a");
    ChildProcess& b = gateway("gw-b");
    client("a1", "gw-a");
    client("b1", "gw-b");
    client("b2", "gw-b");
    for (const char* id : {"a1", "b1", "b2"}) ASSERT_TRUE(stream_->await_event("online", id, 5s)) << id;

    const std::int64_t killed_at = unix_ms();
    b.signal(SIGKILL);
    // The survivor looks one TTL after its own start, and every interval after that.
    const auto bound = std::chrono::milliseconds(2 * kTtlMs + kIntervalMs) + testing::kSchedulingSlack * 2;
    for (const char* id : {"b1", "b2"}) {
        const auto lost = stream_->await_event("offline", id, bound, "gateway_lost");
        ASSERT_TRUE(lost) << id << " was not declared gateway_lost";
        EXPECT_EQ(lost->gateway, "gw-b");
        EXPECT_LE(lost->time_ms - killed_at, 2 * kTtlMs + kIntervalMs + 2 * testing::kSchedulingSlackMs) << id;
        EXPECT_FALSE(record(id).online);
        EXPECT_EQ(record(id).last_reason, "gateway_lost");
    }
    // Two more survivor rounds: nobody is ended twice, gw-a's client is untouched.
    stream_->read_for(std::chrono::milliseconds(2 * kIntervalMs));
    EXPECT_EQ(stream_->of("b1", "offline").size(), 1u);
    EXPECT_EQ(stream_->of("b2", "offline").size(), 1u);
    EXPECT_TRUE(stream_->of("a1", "offline").empty());
    EXPECT_TRUE(record("a1").online);
    stream_->expect_epoch_order_without_duplicates();
}

TEST_P(PresenceFleet, AClientThatMovesClosesItsGhostAndALateOfflineChangesNothing) {
    ChildProcess& a = gateway("gw-a");
    gateway("gw-b");
    client("mover", "gw-a");
    const auto first = stream_->await_event("online", "mover", 5s);
    ASSERT_TRUE(first);
    client("mover", "gw-b");  // The same device, back through the other gateway while its ghost is on gw-a.
    const auto ghost_closed =
        a.wait_for([](const Json& j) { return j.value("event", "") == "closed" && j.value("id", "") == "mover"; },
                   2s + testing::kSchedulingSlack);
    ASSERT_TRUE(ghost_closed) << "gw-a did not close the ghost";
    EXPECT_EQ(ghost_closed->value("reason", ""), "session_replaced");
    // The replaced session's offline; and gw-a writes nothing more for it (with
    // one redis-server, a session it admits later is written after anything it
    // sent before: one connection, in order).
    ASSERT_TRUE(stream_->await_event("offline", "mover", 5s));
    client("marker", "gw-a");
    ASSERT_TRUE(stream_->await_event("online", "marker", 5s));
    ASSERT_EQ(stream_->of("mover", "offline").size(), 1u) << "exactly one offline for the replaced session";
    EXPECT_EQ(stream_->of("mover", "offline")[0].reason, "session_replaced");
    EXPECT_EQ(stream_->of("mover", "offline")[0].epoch, first->epoch);
    ASSERT_EQ(stream_->of("mover", "online").size(), 2u);
    EXPECT_EQ(stream_->of("mover", "online")[1].epoch, first->epoch + 1);
    EXPECT_EQ(stream_->of("mover", "online")[1].gateway, "gw-b");

    // A late offline from the old epoch, replayed straight into Redis through the same function.
    const std::string length_before = cli({"XLEN", "lifeline:offline"});
    const std::string applied =
        cli({"FCALL", "lifeline_offline", "3", "lifeline:{mover}", "lifeline:{mover}:epoch", "lifeline:{mover}:outbox",
             "mover", std::to_string(first->epoch), "heartbeat_timeout", "5", "gw-a", "", std::to_string(unix_ms()),
             "lifeline:offline", "{lifeline:offline}:seen:", "1000", "60000"});
    EXPECT_EQ(applied.substr(0, 2), "0\n") << "redis-cli: the function must say it did not apply: " << applied;
    EXPECT_EQ(cli({"XLEN", "lifeline:offline"}), length_before);

    // gw-a's first admission resent late (as after a reply lost with its
    // connection): it gets its old epoch back, marked superseded, and nothing
    // else changes; no new epoch, no offline for gw-b's live session.
    std::string token = cli({"HKEYS", "lifeline:{mover}:admissions"});
    const std::size_t at = token.find("gw-a ");
    ASSERT_NE(at, std::string::npos) << token;
    token = token.substr(at, token.find('\n', at) - at);  // "gw-a RUN CONN"
    const std::string run = token.substr(5, token.rfind(' ') - 5);
    const std::string conn = token.substr(token.rfind(' ') + 1);
    const std::string resent =
        cli({"FCALL", "lifeline_online", "4", "lifeline:{mover}", "lifeline:{mover}:epoch",
             "lifeline:{mover}:admissions", "lifeline:{mover}:outbox", "mover", "gw-a", conn, "",
             std::to_string(unix_ms()), "3000", run, "lifeline:offline", "{lifeline:offline}:seen:", "1000", "60000"});
    EXPECT_EQ(resent.substr(0, resent.rfind("1\n") + 2), std::to_string(first->epoch) + "\n\n0\n1\n")
        << "epoch, no replaced gateway, superseded";
    EXPECT_EQ(cli({"XLEN", "lifeline:offline"}), length_before);
    EXPECT_EQ(cli({"GET", "lifeline:{mover}:epoch"}), std::to_string(first->epoch + 1) + "\n");
    const FleetPresence now = record("mover");
    EXPECT_TRUE(now.online);
    EXPECT_EQ(now.gateway, "gw-b");
    EXPECT_EQ(now.epoch, first->epoch + 1);
    stream_->expect_epoch_order_without_duplicates();
}

// A gateway that died right after listing a newer session of an id (its
// online never ran) while the record still says an older session of its run
// is online: the survivor ends that session, once, as gateway_lost. The dead
// gateway's state is written straight into Redis by the test.
TEST_P(PresenceFleet, ASurvivorEndsADeadRunsSessionWhateverConnItListedLast) {
    gateway("gw-a");
    ASSERT_NO_FATAL_FAILURE(await_library_on_every_node());
    const std::string now = std::to_string(unix_ms());
    const std::string online =
        cli({"FCALL", "lifeline_online", "4", "lifeline:{mover}", "lifeline:{mover}:epoch",
             "lifeline:{mover}:admissions", "lifeline:{mover}:outbox", "mover", "gw-x", "1", "10.0.0.9:4000", now,
             "3000", "77", "lifeline:offline", "{lifeline:offline}:seen:", "1000", "60000"});
    ASSERT_EQ(online.substr(0, 2), "1\n") << online;
    // The dead run's outbox (the stream may be on another node) is carried by the survivor.
    cli({"HSET", "lifeline:sessions:{gw-x}", "mover", "77 2"});  // Conn 2, listed; its online never ran.
    cli({"HSET", "lifeline:gateways", "gw-x", std::to_string(unix_ms() - 4000)});
    const auto bound = std::chrono::milliseconds(kTtlMs + 2 * kIntervalMs) + testing::kSchedulingSlack * 2;
    const auto lost = stream_->await_event("offline", "mover", bound, "gateway_lost");
    ASSERT_TRUE(lost) << "the dead run's session was not ended";
    EXPECT_EQ(lost->gateway, "gw-x");
    EXPECT_EQ(lost->epoch, 1u);
    EXPECT_FALSE(record("mover").online);
    stream_->read_for(std::chrono::milliseconds(2 * kIntervalMs));  // Two more survivor rounds: once.
    EXPECT_EQ(stream_->of("mover", "offline").size(), 1u);
    EXPECT_EQ(stream_->of("mover", "online").size(), 1u);
    EXPECT_EQ(cli({"HLEN", "lifeline:sessions:{gw-x}"}), "0\n");
    stream_->expect_epoch_order_without_duplicates();
}

// A database Redis refuses (out of range; any but 0 on a cluster) is an error
// event naming Redis' reason, not a gateway that waits silently.
TEST_P(PresenceFleet, ARefusedDatabaseIsReportedWithRedisReason) {
    const std::string db = cluster_ ? "/1" : "/99";
    ChildProcess g(
        {LIFELINE_BINARY, "serve", "--listen", "127.0.0.1:0", "--presence", url() + db, "--gateway", "gw-db"});
    const auto refused = g.wait_for(
        [](const Json& j) {
            return j.value("event", "") == "error" &&
                   j.value("message", "").find("Redis refused the session") != std::string::npos;
        },
        10s);
    ASSERT_TRUE(refused) << "no error event for a refused SELECT";
    EXPECT_NE(refused->value("message", "").find(cluster_ ? "cluster mode" : "out of range"), std::string::npos)
        << refused->value("message", "");
}

TEST_F(PresenceRedis, RedisRestartedEmptyConvergesAndKeepsWhatHappenedMeanwhile) {
    ChildProcess& a = gateway("gw-a");
    client("k1", "gw-a");
    ChildProcess& k2 = client("k2", "gw-a");
    ASSERT_TRUE(stream_->await_event("online", "k1", 5s));
    ASSERT_TRUE(stream_->await_event("online", "k2", 5s));

    redis_->kill();
    ASSERT_TRUE(a.wait_for(
        [](const Json& j) {
            return j.value("event", "") == "error" &&
                   j.value("message", "").find("presence: Redis") != std::string::npos;
        },
        5s));
    k2.signal(SIGSTOP);  // Ends while Redis is away: detection does not wait for Redis.
    ASSERT_TRUE(a.wait_for([](const Json& j) { return j.value("event", "") == "closed" && j.value("id", "") == "k2"; },
                           std::chrono::milliseconds(kTimeoutMs) + testing::kSchedulingSlack));
    client("k3", "gw-a");  // Admitted while Redis is away.

    redis_->restart();
    Result<PresenceReader> reader = PresenceReader::connect(redis_->url());
    ASSERT_TRUE(reader) << reader.error().message;
    reader_ = std::make_unique<PresenceReader>(std::move(*reader));
    stream_->reset(*reader_);  // A new, empty stream.
    const auto k2_gone = stream_->await_event("offline", "k2", 10s);
    ASSERT_TRUE(k2_gone) << "the offline that happened while Redis was away never reached it";
    EXPECT_EQ(k2_gone->reason, "heartbeat_timeout");
    ASSERT_TRUE(stream_->await_event("online", "k3", 5s));
    EXPECT_TRUE(record("k1").online) << "the live set was not re-asserted";
    EXPECT_EQ(record("k1").gateway, "gw-a");
    EXPECT_TRUE(record("k3").online);
    EXPECT_FALSE(record("k2").online);
    k2.signal(SIGCONT);
    stream_->read_for(300ms);
    stream_->expect_epoch_order_without_duplicates();
}

TEST_F(PresenceRedis, RedisPausedPastTheTtlConvergesWithoutFalseGatewayLoss) {
    ChildProcess& a = gateway("gw-a");
    gateway("gw-b");
    client("p1", "gw-a");
    ChildProcess& p2 = client("p2", "gw-a");
    client("q1", "gw-b");
    for (const char* id : {"p1", "p2", "q1"}) ASSERT_TRUE(stream_->await_event("online", id, 5s)) << id;

    redis_->pause();  // Longer than the TTL: every key's TTL runs out meanwhile.
    p2.signal(SIGSTOP);
    ASSERT_TRUE(a.wait_for([](const Json& j) { return j.value("event", "") == "closed" && j.value("id", "") == "p2"; },
                           std::chrono::milliseconds(kTimeoutMs) + testing::kSchedulingSlack));
    ASSERT_TRUE(a.wait_for(
        [](const Json& j) {
            return j.value("event", "") == "error" && j.value("message", "").find("no reply") != std::string::npos;
        },
        std::chrono::milliseconds(kTtlMs) + testing::kSchedulingSlack));
    // Past the TTL, measured by the gateway's own verdict plus the rest of it.
    ASSERT_FALSE(a.wait_for([](const Json&) { return false; }, std::chrono::milliseconds(kTtlMs)));
    redis_->resume();

    const auto p2_gone = stream_->await_event("offline", "p2", 10s);
    ASSERT_TRUE(p2_gone);
    EXPECT_EQ(p2_gone->reason, "heartbeat_timeout");
    // Two gateway TTLs after the pause: each gateway came back, nobody reaped a live one.
    stream_->read_for(std::chrono::milliseconds(2 * kTtlMs));
    for (const PresenceEvent& e : stream_->events())
        EXPECT_NE(e.reason, "gateway_lost") << e.id << " at " << e.stream_id;
    EXPECT_TRUE(record("p1").online);
    EXPECT_TRUE(record("q1").online);
    EXPECT_EQ(record("q1").gateway, "gw-b");
    p2.signal(SIGCONT);
    stream_->expect_epoch_order_without_duplicates();
}

}  // namespace
}  // namespace lifeline
