// ClientSession with config.websocket against the real ServerSession with
// config.websocket, wired back to back in memory on one manual clock: the
// upgrade with the id, token and resume token in the query, masked frames the
// server accepts, RTT from the client's own pings, messages both ways, the
// server's close codes mapped back to reasons, a refused upgrade, and a
// silent server caught as heartbeat_timeout.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/websocket.hpp"

namespace lifeline {
namespace {

using Kind = SessionEventKind;
using R = DisconnectReason;

const Instant kStart = Instant::from_ns(1'000'000'000);
Duration ms(std::int64_t n) { return Duration::milliseconds(n); }

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct Pair {
    ClientSessionConfig client_config;
    ServerSessionConfig server_config;
    Instant now = kStart;
    std::unique_ptr<ClientSession> client;
    std::unique_ptr<ServerSession> server;
    std::vector<SessionEvent> client_events;
    std::vector<SessionEvent> server_events;
    std::vector<std::uint8_t> to_server;  // What the client wrote, all of it.
    bool server_silent = false;           // Drop what the server writes (a dead path).

    Pair() {
        client_config.websocket = true;
        client_config.websocket_host = "gateway.test:8080";
        client_config.websocket_path = "/live";
        client_config.websocket_seed = 42;
        client_config.id = "sensor/7+x";  // Needs percent-encoding.
        client_config.heartbeat = ms(200);
        client_config.timeout = ms(1000);
        server_config.websocket = true;
        server_config.heartbeat = ms(300);
        server_config.timeout = ms(1500);
        server_config.min_interval = ms(100);
        server_config.server_pings = true;
    }
    void start() {
        EXPECT_TRUE(client_config.validate().ok()) << client_config.validate().error().message;
        server = std::make_unique<ServerSession>(server_config, 1, now);
        client = std::make_unique<ClientSession>(client_config, now);
        pump();
    }
    // Moves bytes both ways until neither side has anything to say.
    void pump() {
        for (bool moved = true; moved;) {
            moved = false;
            while (auto t = client->poll_transmit()) {
                const std::vector<std::uint8_t> b(t->bytes.begin(), t->bytes.end());
                to_server.insert(to_server.end(), b.begin(), b.end());
                server->receive(b, now);
                moved = true;
            }
            while (auto t = server->poll_transmit()) {
                const std::vector<std::uint8_t> b(t->bytes.begin(), t->bytes.end());
                if (!server_silent) client->receive(b, now);
                moved = true;
            }
            while (auto e = client->poll_event()) client_events.push_back(std::move(*e)), moved = true;
            while (auto e = server->poll_event()) {
                if (e->kind == Kind::hello) pending_hello = true;
                server_events.push_back(std::move(*e));
                moved = true;
            }
        }
    }
    void advance(Duration d) {
        const Instant end = now + d;
        while (std::min(client->next_timeout(), server->next_timeout()) <= end) {
            now = std::max(now, std::min(client->next_timeout(), server->next_timeout()));
            client->handle_timeout(now);
            server->handle_timeout(now);
            pump();
        }
        now = end;
    }
    static const SessionEvent* find(const std::vector<SessionEvent>& events, Kind kind) {
        for (const SessionEvent& e : events)
            if (e.kind == kind) return &e;
        return nullptr;
    }
    static int count(const std::vector<SessionEvent>& events, Kind kind) {
        int n = 0;
        for (const SessionEvent& e : events) n += e.kind == kind;
        return n;
    }
    bool pending_hello = false;
};

TEST(WebSocketClientSession, UpgradesAndBothSidesOpenWithTheIdFromTheQuery) {
    Pair p;
    p.start();
    const std::string request(p.to_server.begin(), p.to_server.end());
    EXPECT_EQ(request.rfind("GET /live?id=sensor%2F7%2Bx HTTP/1.1\r\nHost: gateway.test:8080\r\n", 0), 0u) << request;
    ASSERT_EQ(p.client->state(), ClientSession::State::open);
    const SessionEvent* opened = Pair::find(p.client_events, Kind::opened);
    ASSERT_TRUE(opened);
    EXPECT_EQ(opened->interval, ms(200)) << "no grant over WebSocket: our own interval";
    EXPECT_EQ(opened->timeout, ms(1000));
    const SessionEvent* server_opened = Pair::find(p.server_events, Kind::opened);
    ASSERT_TRUE(server_opened);
    EXPECT_EQ(server_opened->client_id, "sensor/7+x");
}

TEST(WebSocketClientSession, PingsWhenQuietGetRttAndNothingDiesWhileBothTalk) {
    Pair p;
    p.start();
    p.advance(ms(5000));  // 25 of our intervals, many timeouts' worth.
    EXPECT_GE(Pair::count(p.client_events, Kind::rtt), 10) << "our masked pings reach the server and come back";
    EXPECT_EQ(p.client->state(), ClientSession::State::open);
    EXPECT_EQ(p.server->state(), ServerSession::State::open);
    EXPECT_FALSE(Pair::find(p.server_events, Kind::error)) << Pair::find(p.server_events, Kind::error)->message;
}

TEST(WebSocketClientSession, MessagesGoBothWays) {
    Pair p;
    p.client_config.max_body_size = p.server_config.max_body_size = 1 << 20;
    p.start();
    const std::string hello = "hello server";
    ASSERT_TRUE(p.client->send(bytes(hello)).ok());
    p.pump();
    const SessionEvent* at_server = Pair::find(p.server_events, Kind::message);
    ASSERT_TRUE(at_server);
    EXPECT_EQ(std::string(at_server->payload.begin(), at_server->payload.end()), hello);
    const std::string big(70000, 'x');  // A 64-bit length on the wire.
    ASSERT_TRUE(p.server->send_text(bytes(big)).ok());
    p.pump();
    const SessionEvent* at_client = Pair::find(p.client_events, Kind::message);
    ASSERT_TRUE(at_client);
    EXPECT_EQ(at_client->payload.size(), big.size());
    EXPECT_TRUE(at_client->text);
}

TEST(WebSocketClientSession, ServerClosesMapBackToReasons) {
    const struct {
        CloseCode code;
        R reason;
    } cases[] = {{CloseCode::session_replaced, R::session_replaced},
                 {CloseCode::shutdown, R::peer_closed},
                 {CloseCode::heartbeat_timeout, R::peer_closed},
                 {CloseCode::protocol_error, R::protocol_error}};
    for (const auto& c : cases) {
        Pair p;
        p.start();
        p.server->close(c.code, "bye", R::local_close);
        p.pump();
        const SessionEvent* closed = Pair::find(p.client_events, Kind::closed);
        ASSERT_TRUE(closed) << static_cast<int>(c.code);
        EXPECT_EQ(closed->reason, c.reason) << closed->message;
        EXPECT_NE(closed->message.find(std::to_string(websocket_close_code(static_cast<std::uint16_t>(c.code)))),
                  std::string::npos)
            << closed->message;
    }
}

TEST(WebSocketClientSession, ASilentServerIsHeartbeatTimeoutAfterOurTimeout) {
    Pair p;
    p.start();
    p.server_silent = true;
    p.advance(ms(3000));
    const SessionEvent* dead = Pair::find(p.client_events, Kind::dead);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->reason, R::heartbeat_timeout);
    EXPECT_EQ(dead->budget, ms(1000));
    EXPECT_LE(dead->silence, ms(1000) + ms(200)) << "caught within the timeout and one timer step";
    EXPECT_EQ(Pair::find(p.client_events, Kind::closed)->reason, R::heartbeat_timeout);
}

TEST(WebSocketClientSession, CredentialAndResumeTokenRideTheQueryAndTheRefusalIsRejected) {
    Pair p;
    p.server_config.admission = true;
    p.client_config.credential = "s3cret&x";
    p.client_config.resume_token = std::string("\x01\xfe", 2);
    p.start();
    const SessionEvent* hello = Pair::find(p.server_events, Kind::hello);
    ASSERT_TRUE(hello);
    EXPECT_EQ(hello->credential, "s3cret&x");
    EXPECT_EQ(hello->resume_token, std::string("\x01\xfe", 2));
    p.server->reject(static_cast<std::uint16_t>(CloseCode::id_in_use), "id in use");
    p.pump();
    const SessionEvent* closed = Pair::find(p.client_events, Kind::closed);
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->reason, R::rejected);
    EXPECT_NE(closed->message.find("403"), std::string::npos) << closed->message;
}

TEST(WebSocketClientSession, AnAdmittedUpgradeHandsUsTheResumeToken) {
    Pair p;
    p.server_config.admission = true;
    p.start();
    ASSERT_TRUE(p.server->admit(std::string("\xab\xcd", 2), p.now).ok());
    p.pump();
    ASSERT_EQ(p.client->state(), ClientSession::State::open);
    EXPECT_EQ(p.client->resume_token(), std::string("\xab\xcd", 2));
}

TEST(WebSocketClientSession, ABadAnswerIsAProtocolErrorOrUnreachable) {
    ClientSessionConfig c;
    c.websocket = true;
    c.websocket_host = "h";
    {
        ClientSession s(c, kStart);
        s.receive(bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: wrong=\r\n\r\n"),
                  kStart);
        std::optional<SessionEvent> e;
        while (auto x = s.poll_event()) e = std::move(x);
        ASSERT_TRUE(e);
        EXPECT_EQ(e->reason, R::protocol_error);
        EXPECT_NE(e->message.find("Sec-WebSocket-Accept"), std::string::npos) << e->message;
    }
    {
        ClientSession s(c, kStart);
        s.handle_timeout(kStart + c.handshake_timeout);
        std::optional<SessionEvent> e;
        while (auto x = s.poll_event()) e = std::move(x);
        ASSERT_TRUE(e);
        EXPECT_EQ(e->reason, R::unreachable);
        EXPECT_NE(e->message.find("no 101"), std::string::npos) << e->message;
    }
}

TEST(WebSocketClientSession, AMaskedServerFrameIsAProtocolError) {
    Pair p;
    p.start();
    std::vector<std::uint8_t> frame;
    const ws::Mask mask{1, 2, 3, 4};
    ws::append_frame(frame, ws::Opcode::binary, bytes("x"), true, &mask);
    p.client->receive(frame, p.now);
    p.pump();
    const SessionEvent* closed = Pair::find(p.client_events, Kind::closed);
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->reason, R::protocol_error);
    EXPECT_NE(closed->message.find("mask"), std::string::npos) << closed->message;
}

TEST(WebSocketClientSession, ConfigNeedsAHostAPathAndFraming) {
    ClientSessionConfig c;
    c.websocket = true;
    EXPECT_FALSE(c.validate().ok()) << "no host";
    c.websocket_host = "h";
    c.websocket_path = "live";
    EXPECT_FALSE(c.validate().ok()) << "path without /";
    c.websocket_path = "/";
    c.framed = false;
    EXPECT_FALSE(c.validate().ok()) << "raw websocket";
    c.framed = true;
    EXPECT_TRUE(c.validate().ok());
}

}  // namespace
}  // namespace lifeline
