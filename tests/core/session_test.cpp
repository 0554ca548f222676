// The public engine end to end without I/O: a ClientSession and a
// ServerSession joined by a byte pipe on a manual clock, so every protocol
// rule is checked against the objects the runtime, the simulator and users'
// own loops drive.
#include <gtest/gtest.h>

#include <deque>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/server_session.hpp"

namespace lifeline {
namespace {

using Kind = SessionEventKind;
using R = DisconnectReason;

const Instant kStart = Instant::from_ns(1'000'000'000);
Duration ms(std::int64_t n) { return Duration::milliseconds(n); }

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

template <class Session>
std::vector<std::uint8_t> drain_transmit(Session& s) {
    std::vector<std::uint8_t> out;
    while (auto t = s.poll_transmit()) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
    return out;
}

template <class Session>
std::vector<SessionEvent> drain_events(Session& s) {
    std::vector<SessionEvent> out;
    while (auto e = s.poll_event()) out.push_back(std::move(*e));
    return out;
}

// One connection: the two sessions, the clock, and what each side heard.
struct Pair {
    ServerSessionConfig server_config;
    ClientSessionConfig client_config;
    Instant now = kStart;
    std::unique_ptr<ServerSession> server;
    std::unique_ptr<ClientSession> client;
    std::vector<SessionEvent> server_events, client_events;
    bool client_mute = false;  // The client's bytes are lost on the way.
    bool server_mute = false;

    void start() {
        server = std::make_unique<ServerSession>(server_config, 1, now);
        client = std::make_unique<ClientSession>(client_config, now);
        pump();
    }
    // Moves bytes both ways (no delay) until nothing moves, collecting events.
    void pump() {
        for (int round = 0; round < 100; ++round) {
            const auto to_server = drain_transmit(*client);
            const auto to_client = drain_transmit(*server);
            if (!client_mute) server->receive(to_server, now);
            if (!server_mute) client->receive(to_client, now);
            for (auto& e : drain_events(*server)) server_events.push_back(std::move(e));
            for (auto& e : drain_events(*client)) client_events.push_back(std::move(e));
            if (to_server.empty() && to_client.empty()) return;
        }
        FAIL() << "the sessions never went quiet";
    }
    // Runs both sessions' timers up to `until`, in order, pumping after each.
    void run_until(Instant until) {
        while (true) {
            const Instant next = std::min(server->next_timeout(), client->next_timeout());
            if (next > until) break;
            now = std::max(now, next);
            server->handle_timeout(now);
            client->handle_timeout(now);
            pump();
        }
        now = until;
    }
    static const SessionEvent* find(const std::vector<SessionEvent>& events, Kind kind) {
        for (const auto& e : events) {
            if (e.kind == kind) return &e;
        }
        return nullptr;
    }
};

TEST(Sessions, HandshakeGrantsWithinTheServerLimitsAndBothSidesOpen) {
    Pair p;
    p.server_config.min_interval = ms(200);
    p.server_config.max_timeout = Duration::seconds(10);
    p.client_config.heartbeat = ms(50);  // Faster than the server allows.
    p.client_config.timeout = Duration::seconds(60);
    p.client_config.id = "alice";
    p.start();
    const SessionEvent* s = Pair::find(p.server_events, Kind::opened);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->interval, ms(200));
    EXPECT_EQ(s->timeout, Duration::seconds(10));  // Clamped to max_timeout.
    EXPECT_EQ(s->client_id, "alice");
    const SessionEvent* c = Pair::find(p.client_events, Kind::opened);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->interval, ms(200));
    EXPECT_EQ(c->timeout, Duration::seconds(60));  // The client judges by the longer of its own and the granted.
    EXPECT_EQ(p.client->granted_id(), "alice");
    EXPECT_EQ(p.server->state(), ServerSession::State::open);
    EXPECT_EQ(p.client->state(), ClientSession::State::open);
}

TEST(Sessions, AClientWithoutAnIdIsNamedAfterTheConnection) {
    Pair p;
    p.start();
    EXPECT_EQ(p.server->client_id(), "c1");
    EXPECT_EQ(p.client->granted_id(), "c1");
    EXPECT_TRUE(p.server->chosen_id().empty());
}

TEST(Sessions, HeartbeatsFlowWhileQuietAndYieldRttSamples) {
    Pair p;
    p.client_config.heartbeat = ms(100);
    p.client_config.timeout = ms(400);
    p.start();
    p.run_until(kStart + Duration::seconds(5));
    EXPECT_TRUE(Pair::find(p.client_events, Kind::rtt));
    EXPECT_FALSE(Pair::find(p.client_events, Kind::dead));
    EXPECT_FALSE(Pair::find(p.server_events, Kind::dead));
    EXPECT_GE(p.client->liveness().pings_sent(), 40u);  // One per 100 ms of quiet.
}

TEST(Sessions, ASilentClientIsDeadAtTheGrantedTimeoutAndGetsACloseFrame) {
    Pair p;
    p.server_config.server_pings = true;  // So the client keeps hearing the server.
    p.client_config.heartbeat = ms(100);
    p.client_config.timeout = ms(400);
    p.start();
    p.run_until(kStart + Duration::seconds(1));
    p.client_mute = true;  // Its cable is cut.
    const Instant cut = p.now;
    p.run_until(kStart + Duration::seconds(3));
    const SessionEvent* dead = Pair::find(p.server_events, Kind::dead);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->reason, R::heartbeat_timeout);
    EXPECT_EQ(dead->budget, ms(400));
    EXPECT_LE(dead->silence, ms(400) + ms(1));
    const SessionEvent* closed = Pair::find(p.server_events, Kind::closed);
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->reason, R::heartbeat_timeout);
    EXPECT_EQ(p.server->state(), ServerSession::State::closed);
    EXPECT_TRUE(p.server->next_timeout().is_never());
    // The client hears the CLOSE (the server's direction still works).
    const SessionEvent* client_closed = Pair::find(p.client_events, Kind::closed);
    ASSERT_TRUE(client_closed);
    EXPECT_EQ(client_closed->reason, R::peer_closed);
    EXPECT_NE(client_closed->message.find("CLOSE 7"), std::string::npos) << client_closed->message;
    EXPECT_LE(p.now - cut, Duration::seconds(2));
}

TEST(Sessions, ASilentServerIsDeadForTheClient) {
    Pair p;
    p.client_config.heartbeat = ms(100);
    p.client_config.timeout = ms(400);
    p.start();
    p.server_mute = true;
    p.run_until(kStart + Duration::seconds(2));
    const SessionEvent* dead = Pair::find(p.client_events, Kind::dead);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->reason, R::heartbeat_timeout);
    ASSERT_TRUE(Pair::find(p.client_events, Kind::closed));
    EXPECT_EQ(Pair::find(p.client_events, Kind::closed)->reason, R::heartbeat_timeout);
    // Exactly one closed event, and it is the last.
    EXPECT_EQ(p.client_events.back().kind, Kind::closed);
}

TEST(Sessions, NoHelloWithinTheHandshakeTimeoutIsAProtocolError) {
    ServerSessionConfig config;
    config.handshake_timeout = Duration::seconds(2);
    ServerSession s(config, 9, kStart);
    EXPECT_EQ(s.next_timeout(), kStart + Duration::seconds(2));
    s.receive(bytes_of("\x00\x00"), kStart + Duration::seconds(1));  // A HELLO dribbled in does not extend it.
    s.handle_timeout(kStart + Duration::seconds(2));
    auto events = drain_events(s);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].kind, Kind::error);
    EXPECT_NE(events[0].message.find("no HELLO within 2s"), std::string::npos);
    EXPECT_EQ(events[1].kind, Kind::closed);
    EXPECT_EQ(events[1].reason, R::protocol_error);
    EXPECT_FALSE(drain_transmit(s).empty()) << "a CLOSE frame goes out";
}

TEST(Sessions, GarbageCostsOnlyThatSessionWithAProtocolError) {
    ServerSessionConfig config;
    SessionCounters counters;
    config.counters = &counters;
    ServerSession s(config, 1, kStart);
    s.receive(bytes_of("GET / HTTP/1.1\r\n\r\n"), kStart);
    const auto events = drain_events(s);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind, Kind::closed);
    EXPECT_EQ(events.back().reason, R::protocol_error);
    EXPECT_EQ(counters.protocol_errors.load(), 1u);
    s.receive(bytes_of("more"), kStart);  // After the end: ignored.
    EXPECT_FALSE(s.poll_event());
}

TEST(Sessions, APingFloodIsClosedAsTooManyPings) {
    Pair p;
    p.start();
    std::vector<std::uint8_t> flood;
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(append_frame(flood, Ping{static_cast<std::uint64_t>(i + 1), 0}).ok());
    p.server->receive(flood, p.now);
    const auto events = drain_events(*p.server);
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events[events.size() - 2].kind, Kind::error);
    EXPECT_NE(events[events.size() - 2].message.find("too many pings"), std::string::npos);
    EXPECT_EQ(events.back().reason, R::protocol_error);
}

TEST(Sessions, PingsThatQueuedDuringOurOwnStallAreForgiven) {
    Pair p;
    p.start();
    p.now = p.now + Duration::seconds(2);
    p.server->on_local_stall(p.now, Duration::seconds(2));
    std::vector<std::uint8_t> queued;
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(append_frame(queued, Ping{static_cast<std::uint64_t>(i + 1), 0}).ok());
    p.server->receive(queued, p.now);
    EXPECT_EQ(p.server->state(), ServerSession::State::open);
}

TEST(Sessions, MessagesGoBothWaysAndTooLargeOnesAreRefused) {
    Pair p;
    p.server_config.max_body_size = 64;
    p.client_config.max_body_size = 64;
    p.start();
    ASSERT_TRUE(p.client->send(bytes_of("hello")).ok());
    ASSERT_TRUE(p.server->send(bytes_of("world")).ok());
    p.pump();
    const SessionEvent* at_server = Pair::find(p.server_events, Kind::message);
    ASSERT_TRUE(at_server);
    EXPECT_EQ(at_server->payload, bytes_of("hello"));
    const SessionEvent* at_client = Pair::find(p.client_events, Kind::message);
    ASSERT_TRUE(at_client);
    EXPECT_EQ(at_client->payload, bytes_of("world"));
    const std::vector<std::uint8_t> big(65, 'x');
    const Result<void> refused = p.client->send(big);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message.find("64-byte limit"), std::string::npos);
}

TEST(Sessions, ControlFramesComeBeforeQueuedData) {
    Pair p;
    p.start();
    ASSERT_TRUE(p.server->send(bytes_of("data first in time")).ok());
    std::vector<std::uint8_t> ping;
    ASSERT_TRUE(append_frame(ping, Ping{1, 2}).ok());
    p.server->receive(ping, p.now);
    auto first = p.server->poll_transmit();
    ASSERT_TRUE(first);
    EXPECT_TRUE(first->control);  // The PONG.
    auto second = p.server->poll_transmit();
    ASSERT_TRUE(second);
    EXPECT_FALSE(second->control);
}

TEST(Sessions, TheClientNamesTheReasonTheServerGaveInItsClose) {
    Pair p;
    p.start();
    p.server->close(CloseCode::session_replaced, "the same client id connected again", R::session_replaced);
    p.pump();
    const SessionEvent* closed = Pair::find(p.client_events, Kind::closed);
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->reason, R::session_replaced);
    EXPECT_EQ(Pair::find(p.server_events, Kind::closed)->reason, R::session_replaced);
}

TEST(Sessions, NoWelcomeWithinTheHandshakeTimeoutIsUnreachable) {
    ClientSessionConfig config;
    config.handshake_timeout = ms(500);
    ClientSession c(config, kStart);
    EXPECT_FALSE(drain_transmit(c).empty()) << "HELLO is queued at once";
    c.handle_timeout(kStart + ms(500));
    const auto events = drain_events(c);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].reason, R::unreachable);
}

TEST(Sessions, RawServerSessionsCountBytesAsMessagesAndEndWhenIdle) {
    ServerSessionConfig config;
    config.framed = false;
    config.idle_timeout = Duration::seconds(1);
    ServerSession s(config, 3, kStart);
    EXPECT_EQ(drain_events(s).front().kind, Kind::opened);
    s.receive(bytes_of("abc"), kStart + ms(500));
    EXPECT_EQ(drain_events(s).front().payload, bytes_of("abc"));
    EXPECT_EQ(s.next_timeout(), kStart + ms(1500));
    s.handle_timeout(kStart + ms(1500));
    const auto events = drain_events(s);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].kind, Kind::dead);
    EXPECT_EQ(events[1].reason, R::idle_timeout);
    EXPECT_TRUE(drain_transmit(s).empty()) << "raw mode has no CLOSE frame";
}

TEST(Sessions, AnIdleSessionOwnsNoOutputMemory) {
    Pair p;
    p.start();
    p.run_until(kStart + Duration::seconds(3));
    EXPECT_EQ(p.server->pending_bytes(), 0u);
    EXPECT_FALSE(p.server->poll_transmit());
    EXPECT_FALSE(p.server->poll_event());
    // What an idle connection pays for the engine (the runtime embeds one
    // per connection): config, liveness 32, decoder 16, outbox and extras in
    // one word, accept time, number, ping bucket.
    EXPECT_LE(sizeof(ServerSession), 88u);
}

TEST(Sessions, TheOutboxKeepsItsOwnersWordThroughOutput) {
    // ServerSession parks its extras in the outbox's word: it must come back
    // intact whether or not output is pending, and cost no allocation of its own.
    SessionOutbox outbox;
    EXPECT_EQ(outbox.parked(), 0u);
    alignas(8) static const std::uint8_t owner[8] = {};
    const auto word = reinterpret_cast<std::uintptr_t>(&owner[0]) | 2;
    outbox.park(word);
    EXPECT_EQ(outbox.parked(), word);
    outbox.event(SessionEvent(Kind::opened));
    ASSERT_TRUE(outbox.frame(Pong{7, 9}, true, kDefaultMaxBodySize).ok());
    EXPECT_EQ(outbox.parked(), word) << "moved into the pending state";
    outbox.park(0);
    EXPECT_EQ(outbox.parked(), 0u);
    outbox.park(word);
    ASSERT_TRUE(outbox.poll_transmit());
    EXPECT_FALSE(outbox.poll_transmit());
    ASSERT_TRUE(outbox.poll_event());
    EXPECT_FALSE(outbox.poll_event());
    EXPECT_EQ(outbox.pending_bytes(), 0u);
    EXPECT_EQ(outbox.parked(), word) << "back in the outbox's own word once idle";
    SessionOutbox moved(std::move(outbox));
    EXPECT_EQ(moved.parked(), word);
    EXPECT_EQ(outbox.parked(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty, by design.
}

TEST(Sessions, ConfigErrorsNameTheField) {
    ServerSessionConfig s;
    s.timeout = s.heartbeat;
    ASSERT_FALSE(s.validate().ok());
    EXPECT_NE(s.validate().error().message.find("timeout"), std::string::npos);
    EXPECT_EQ(s.validate().error().message.find("--"), std::string::npos) << "no CLI flags in library messages";
    ClientSessionConfig c;
    c.id = std::string(300, 'x');
    ASSERT_FALSE(c.validate().ok());
}

}  // namespace
}  // namespace lifeline
