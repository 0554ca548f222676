// ServerSession with config.websocket, played by a hand-written client on a
// manual clock: the upgrade, messages both ways, the server's pings and the
// RTT from their pongs, heartbeat_timeout with close 4007, and every kind of
// bad input ending only this session with the right HTTP status or close code.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/websocket.hpp"
#include "websocket_client_frames.hpp"

namespace lifeline {
namespace {

using Kind = SessionEventKind;
using R = DisconnectReason;
using testing_ws::masked;
using testing_ws::upgrade_request;
using ws::Opcode;

const Instant kStart = Instant::from_ns(1'000'000'000);
Duration ms(std::int64_t n) { return Duration::milliseconds(n); }

std::span<const std::uint8_t> bytes(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct Client {
    ServerSessionConfig config;
    Instant now = kStart;
    std::unique_ptr<ServerSession> session;
    std::vector<std::uint8_t> heard;  // Everything the server wrote.
    std::vector<SessionEvent> events;

    Client() {
        config.websocket = true;
        config.heartbeat = ms(200);
        config.timeout = ms(1000);
        config.min_interval = ms(100);
        config.max_body_size = 1024;
        config.server_pings = true;
        session = std::make_unique<ServerSession>(config, 3, now);
    }
    void send(std::span<const std::uint8_t> b) {
        session->receive(b, now);
        collect();
    }
    void send(const std::vector<std::uint8_t>& b) { send(std::span<const std::uint8_t>(b)); }
    void advance(Duration d) {
        const Instant end = now + d;
        while (session->next_timeout() <= end) {
            now = std::max(now, session->next_timeout());
            session->handle_timeout(now);
            collect();
        }
        now = end;
    }
    void collect() {
        while (auto t = session->poll_transmit()) heard.insert(heard.end(), t->bytes.begin(), t->bytes.end());
        while (auto e = session->poll_event()) events.push_back(std::move(*e));
    }
    std::string heard_text() const { return std::string(heard.begin(), heard.end()); }
    const SessionEvent* find(Kind kind) const {
        for (const SessionEvent& e : events)
            if (e.kind == kind) return &e;
        return nullptr;
    }
    // The server's frames after the 101 response, decoded (they are unmasked).
    std::vector<ws::WsFrame> frames() const {
        const std::string text = heard_text();
        const std::size_t start = text.find("\r\n\r\n");
        std::vector<ws::WsFrame> out;
        std::size_t i = start == std::string::npos ? 0 : start + 4;
        while (i + 2 <= heard.size()) {
            ws::WsFrame f;
            f.fin = (heard[i] & 0x80) != 0;
            f.opcode = static_cast<Opcode>(heard[i] & 0x0F);
            std::size_t len = heard[i + 1] & 0x7F;
            std::size_t at = i + 2;
            if (len == 126) {
                len = static_cast<std::size_t>((heard[i + 2] << 8) | heard[i + 3]);
                at = i + 4;
            }
            f.payload.assign(heard.begin() + static_cast<std::ptrdiff_t>(at),
                             heard.begin() + static_cast<std::ptrdiff_t>(at + len));
            out.push_back(std::move(f));
            i = at + len;
        }
        return out;
    }
    std::uint16_t close_code() const {
        for (const ws::WsFrame& f : frames())
            if (f.opcode == Opcode::close && f.payload.size() >= 2)
                return static_cast<std::uint16_t>((f.payload[0] << 8) | f.payload[1]);
        return 0;
    }
    void upgrade(const std::string& target = "/live?id=phone-1") { send(bytes(upgrade_request(target))); }
};

TEST(WebSocketSession, TheUpgradeOpensWithTheQueryIdAndTheServersTimings) {
    Client c;
    ASSERT_TRUE(c.config.validate());
    c.upgrade();
    EXPECT_EQ(c.heard_text().rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << c.heard_text();
    EXPECT_NE(c.heard_text().find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos);
    const SessionEvent* opened = c.find(Kind::opened);
    ASSERT_TRUE(opened);
    EXPECT_EQ(opened->client_id, "phone-1");
    EXPECT_EQ(opened->timeout, ms(1000));
    EXPECT_EQ(c.session->state(), ServerSession::State::open);
}

TEST(WebSocketSession, FramesRightAfterTheRequestAreRead) {
    Client c;
    std::string both = upgrade_request("/");
    const std::vector<std::uint8_t> hi = masked(Opcode::text, "hi", true);
    both.append(hi.begin(), hi.end());
    c.send(bytes(both));
    const SessionEvent* m = c.find(Kind::message);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->text);
    EXPECT_EQ(std::string(m->payload.begin(), m->payload.end()), "hi");
    EXPECT_EQ(c.find(Kind::opened)->client_id, "c3") << "no ?id=: the connection's number";
}

TEST(WebSocketSession, FragmentsAreAssembledIntoOneMessage) {
    Client c;
    c.upgrade();
    c.send(masked(Opcode::binary, "ab", false));
    c.send(masked(Opcode::ping, "x", true));  // Control frames may come between fragments.
    c.send(masked(Opcode::continuation, "cd", true));
    const SessionEvent* m = c.find(Kind::message);
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->text);
    EXPECT_EQ(std::string(m->payload.begin(), m->payload.end()), "abcd");
    bool ponged = false;
    for (const ws::WsFrame& f : c.frames()) ponged |= f.opcode == Opcode::pong && f.payload.size() == 1;
    EXPECT_TRUE(ponged) << "a client's ping is answered with its payload";
}

TEST(WebSocketSession, TheServerPingsWhenQuietAndTheirPongsGiveRtt) {
    Client c;
    c.upgrade();
    c.advance(ms(200));  // Quiet for one heartbeat: the ping goes out now.
    std::vector<ws::WsFrame> frames = c.frames();
    ASSERT_FALSE(frames.empty());
    ASSERT_EQ(frames.back().opcode, Opcode::ping);
    const std::vector<std::uint8_t> ping = frames.back().payload;
    c.advance(ms(5));
    c.send(masked(Opcode::pong, std::string(ping.begin(), ping.end()), true));
    const SessionEvent* rtt = c.find(Kind::rtt);
    ASSERT_TRUE(rtt);
    EXPECT_EQ(rtt->rtt, ms(5));
    // Answering every ping keeps it alive well past the timeout.
    for (int i = 0; i < 20; ++i) {
        c.advance(ms(200));
        const ws::WsFrame last = c.frames().back();
        if (last.opcode == Opcode::ping)
            c.send(masked(Opcode::pong, std::string(last.payload.begin(), last.payload.end()), true));
    }
    EXPECT_FALSE(c.find(Kind::dead));
}

TEST(WebSocketSession, SilencePastTheTimeoutIsHeartbeatTimeoutWithClose4007) {
    Client c;
    c.upgrade();
    c.advance(ms(1100));
    const SessionEvent* dead = c.find(Kind::dead);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->reason, R::heartbeat_timeout);
    EXPECT_EQ(c.close_code(), 4007);
    EXPECT_EQ(c.find(Kind::closed)->reason, R::heartbeat_timeout);
}

TEST(WebSocketSession, APeersCloseIsEchoedAndIsPeerClosed) {
    Client c;
    c.upgrade();
    c.send(masked(Opcode::close,
                  std::string("\x03\xe8"
                              "bye",
                              5),
                  true));
    EXPECT_EQ(c.close_code(), 1000);
    EXPECT_EQ(c.find(Kind::closed)->reason, R::peer_closed);
    EXPECT_EQ(c.find(Kind::closed)->message, "bye");
}

TEST(WebSocketSession, ShutdownIs1001AndApplicationCodesPassInTheirRange) {
    Client c;
    c.upgrade();
    c.session->close(CloseCode::shutdown, "bye", R::shutdown);
    c.collect();
    EXPECT_EQ(c.close_code(), 1001);
    EXPECT_EQ(websocket_close_code(static_cast<std::uint16_t>(CloseCode::slow_consumer)), 4006);
    EXPECT_EQ(websocket_close_code(3100), 3100);
    EXPECT_EQ(websocket_close_code(1234), 1008);
}

struct BadInput {
    std::string name;
    std::vector<std::uint8_t> frame;
    std::uint16_t close_code;
};

TEST(WebSocketSession, EachBadFrameGetsItsCloseCodeAndEndsOnlyThisSession) {
    std::vector<std::uint8_t> unmasked;
    ws::append_frame(unmasked, Opcode::text, std::vector<std::uint8_t>{'x'});
    const std::vector<BadInput> cases = {
        {"unmasked", unmasked, 1002},
        {"oversized", masked(Opcode::binary, std::string(2000, 'x'), true), 1009},
        {"invalid UTF-8", masked(Opcode::text, "\xc3\x28", true), 1007},
        {"control over 125", masked(Opcode::ping, std::string(126, 'p'), true), 1002},
        {"lone continuation", masked(Opcode::continuation, "x", true), 1002},
        {"close code 1005", masked(Opcode::close, std::string("\x03\xed", 2), true), 1002},
    };
    for (const BadInput& b : cases) {
        Client c;
        c.upgrade();
        c.send(b.frame);
        EXPECT_EQ(c.close_code(), b.close_code) << b.name;
        ASSERT_TRUE(c.find(Kind::error)) << b.name;
        ASSERT_TRUE(c.find(Kind::closed)) << b.name;
        EXPECT_EQ(c.find(Kind::closed)->reason, R::protocol_error) << b.name;
    }
}

TEST(WebSocketSession, ABadUpgradeIsAnHttpErrorAndASlowOneTheHandshakeDeadline) {
    Client bad;
    bad.send(bytes(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
    EXPECT_EQ(bad.heard_text().rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << bad.heard_text();
    ASSERT_TRUE(bad.find(Kind::closed));
    EXPECT_EQ(bad.find(Kind::closed)->reason, R::protocol_error);

    Client slow;                    // slowloris: a byte at a time, never finishing.
    for (int i = 0; i < 15; ++i) {  // 6 s: past the 5 s deadline, though bytes keep coming.
        slow.send(bytes(std::string("G")));
        slow.advance(ms(400));
    }
    EXPECT_EQ(slow.heard_text().rfind("HTTP/1.1 408 Request Timeout\r\n", 0), 0u) << slow.heard_text();
    ASSERT_TRUE(slow.find(Kind::closed));
    EXPECT_EQ(slow.find(Kind::closed)->reason, R::protocol_error);
    EXPECT_NE(slow.find(Kind::error)->message.find("no WebSocket upgrade within 5s"), std::string::npos)
        << slow.find(Kind::error)->message;
}

TEST(WebSocketSession, ACloseNeverOvertakesQueuedData) {
    Client c;
    c.upgrade();
    c.collect();
    ASSERT_TRUE(c.session->send(bytes(std::string("last words"))).ok());
    c.session->close(CloseCode::shutdown, "bye", R::shutdown);
    c.collect();
    const std::vector<ws::WsFrame> frames = c.frames();
    ASSERT_GE(frames.size(), 2u);
    EXPECT_EQ(frames[frames.size() - 2].opcode, Opcode::binary);
    EXPECT_EQ(frames.back().opcode, Opcode::close) << "nothing may follow a close (RFC 6455 5.5.1)";
}

TEST(WebSocketSession, AdmittedSessionsStillPingThoughTheConfigSaysNot) {
    Client c;
    c.config.admission = true;
    c.config.server_pings = false;  // Browsers never ping: the WebSocket server must.
    c.session = std::make_unique<ServerSession>(c.config, 3, c.now);
    c.upgrade();
    ASSERT_TRUE(c.session->admit("", c.now).ok());
    c.collect();
    c.advance(ms(250));
    ASSERT_FALSE(c.frames().empty());
    EXPECT_EQ(c.frames().back().opcode, Opcode::ping);
}

TEST(WebSocketSession, PingFloodsAreTooManyPings4003) {
    Client c;
    c.upgrade();
    for (int i = 0; i < 10; ++i) c.send(masked(Opcode::ping, "p", true));
    EXPECT_EQ(c.close_code(), 4003);
}

TEST(WebSocketSession, TextSendsMustBeUtf8AndMessagesEncodeOnceForBroadcast) {
    Client c;
    c.upgrade();
    const std::string bad = "\xff";
    EXPECT_FALSE(c.session->send_text(bytes(bad)).ok());
    EXPECT_TRUE(c.session->send_text(bytes(std::string("ok"))).ok());
    std::vector<std::uint8_t> encoded;
    ASSERT_TRUE(ServerSession::encode_message(c.config, bytes(std::string("all")), encoded).ok());
    EXPECT_EQ(encoded, (std::vector<std::uint8_t>{0x82, 3, 'a', 'l', 'l'}));
}

TEST(WebSocketSession, AdmissionHoldsThe101UntilAdmitAndCarriesTheResumeToken) {
    Client c;
    c.config.admission = true;
    c.session = std::make_unique<ServerSession>(c.config, 3, c.now);
    std::string request = upgrade_request("/live?id=dev-9&token=s3cret&resume=00ff");
    const std::vector<std::uint8_t> early = masked(Opcode::text, "early", true);
    request.append(early.begin(), early.end());  // Pipelined before the 101.
    c.send(bytes(request));
    const SessionEvent* hello = c.find(Kind::hello);
    ASSERT_TRUE(hello);
    EXPECT_EQ(hello->client_id, "dev-9");
    EXPECT_EQ(hello->credential, "s3cret");
    EXPECT_EQ(hello->resume_token, std::string("\x00\xff", 2));
    EXPECT_EQ(hello->target, "/live?id=dev-9&token=s3cret&resume=00ff");
    EXPECT_TRUE(c.heard.empty()) << "nothing before the application decides";
    EXPECT_FALSE(c.find(Kind::message));

    ASSERT_TRUE(c.session->admit(std::string("\x01\x02", 2), c.now).ok());
    c.collect();
    EXPECT_NE(c.heard_text().find("Lifeline-Resume-Token: 0102\r\n"), std::string::npos) << c.heard_text();
    const SessionEvent* m = c.find(Kind::message);
    ASSERT_TRUE(m) << "the pipelined frame is read once admitted";
    EXPECT_EQ(std::string(m->payload.begin(), m->payload.end()), "early");
}

TEST(WebSocketSession, ARejectedUpgradeIs403WithLifelinesCode) {
    Client c;
    c.config.admission = true;
    c.session = std::make_unique<ServerSession>(c.config, 3, c.now);
    c.upgrade();
    ASSERT_TRUE(c.find(Kind::hello));
    c.session->reject(4401, "bad token");
    c.collect();
    EXPECT_EQ(c.heard_text().rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << c.heard_text();
    EXPECT_NE(c.heard_text().find("Lifeline-Close-Code: 4401\r\n"), std::string::npos);
    EXPECT_EQ(c.find(Kind::closed)->reason, R::rejected);
}

}  // namespace
}  // namespace lifeline
