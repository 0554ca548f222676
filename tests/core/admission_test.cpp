// ServerSessionConfig::admission: a HELLO waits for admit() or reject(), what
// the client pipelines meanwhile is held and handled once admitted (dropped
// when refused), and the handshake deadline still runs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/server_session.hpp"

namespace lifeline {
namespace {

using Kind = SessionEventKind;
const Instant kStart = Instant::from_ns(1'000'000'000);

std::vector<std::uint8_t> wire(const std::vector<Frame>& frames) {
    std::vector<std::uint8_t> out;
    for (const Frame& f : frames) EXPECT_TRUE(append_frame(out, f).ok());
    return out;
}

std::span<const std::uint8_t> text(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// What the server session wrote, decoded.
std::vector<Frame> sent(ServerSession& s) {
    std::vector<std::uint8_t> bytes;
    while (auto t = s.poll_transmit()) bytes.insert(bytes.end(), t->bytes.begin(), t->bytes.end());
    std::vector<Frame> frames;
    FrameDecoder decoder(DecoderRole::client);
    std::span<const std::uint8_t> input(bytes);
    while (true) {
        FrameDecoder::Step step = decoder.next(input);
        EXPECT_FALSE(step.error);
        if (!step.frame) break;
        frames.push_back(*step.frame);
    }
    return frames;
}

std::vector<SessionEvent> events(ServerSession& s) {
    std::vector<SessionEvent> out;
    while (auto e = s.poll_event()) out.push_back(std::move(*e));
    return out;
}

struct Admitting : ::testing::Test {
    ServerSessionConfig config = [] {
        ServerSessionConfig c;
        c.admission = true;
        c.max_body_size = 1024;
        return c;
    }();
    ServerSession session{config, 1, kStart};
};

TEST_F(Admitting, HelloWaitsAndPipelinedDataIsHandledOnceAdmitted) {
    const std::string first = "sent right after the HELLO";
    session.receive(wire({Hello{kProtocolVersion, 500, 3000, "dev-1", "", "cred"}, Data{text(first)}}), kStart);
    EXPECT_EQ(session.state(), ServerSession::State::admitting);
    EXPECT_TRUE(sent(session).empty());  // No WELCOME before the verdict.
    std::vector<SessionEvent> e = events(session);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].kind, Kind::hello);
    EXPECT_EQ(e[0].client_id, "dev-1");
    EXPECT_EQ(e[0].credential, "cred");
    // More arrives while the application thinks: held too.
    session.receive(wire({Data{text("second")}}), kStart + Duration::milliseconds(5));
    EXPECT_TRUE(events(session).empty());

    ASSERT_TRUE(session.admit("0123456789abcdef", kStart + Duration::milliseconds(10)));
    std::vector<Frame> out = sent(session);
    ASSERT_FALSE(out.empty());
    const auto* welcome = std::get_if<Welcome>(&out[0]);
    ASSERT_TRUE(welcome);
    EXPECT_EQ(welcome->resume_token, "0123456789abcdef");
    EXPECT_EQ(welcome->interval_ms, 500u);
    e = events(session);
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0].kind, Kind::opened);
    EXPECT_EQ(e[1].kind, Kind::message);
    EXPECT_EQ(std::string(e[1].payload.begin(), e[1].payload.end()), first);
    EXPECT_EQ(std::string(e[2].payload.begin(), e[2].payload.end()), "second");
    // Liveness runs from the WELCOME: silence before it was the server's.
    EXPECT_EQ(session.next_timeout(), kStart + Duration::milliseconds(10) + Duration::milliseconds(3000));
}

TEST_F(Admitting, RejectSendsItsCodeAndDropsWhatWasHeld) {
    session.receive(wire({Hello{kProtocolVersion, 0, 0, "dev-2"}, Data{text("never read")}}), kStart);
    events(session);
    session.reject(4001, "bad credential");
    std::vector<Frame> out = sent(session);
    ASSERT_EQ(out.size(), 1u);
    const auto* close = std::get_if<Close>(&out[0]);
    ASSERT_TRUE(close);
    EXPECT_EQ(close->code, 4001);
    EXPECT_EQ(close->reason, "bad credential");
    std::vector<SessionEvent> e = events(session);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].kind, Kind::closed);
    EXPECT_EQ(e[0].reason, DisconnectReason::rejected);
    EXPECT_FALSE(session.admit("", kStart));  // Too late: not admitting.
}

TEST_F(Admitting, MoreThanOneLargestFrameBeforeTheVerdictIsAProtocolError) {
    session.receive(wire({Hello{kProtocolVersion, 0, 0, "dev-3"}}), kStart);
    events(session);
    const std::vector<std::uint8_t> flood(5 + config.max_body_size + 1, 0x05);
    session.receive(flood, kStart);
    std::vector<SessionEvent> e = events(session);
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e.back().kind, Kind::closed);
    EXPECT_EQ(e.back().reason, DisconnectReason::protocol_error);
}

TEST_F(Admitting, TheHandshakeDeadlineStillRuns) {
    session.receive(wire({Hello{kProtocolVersion, 0, 0, "dev-4"}}), kStart);
    events(session);
    EXPECT_EQ(session.next_timeout(), kStart + config.handshake_timeout);
    session.handle_timeout(kStart + config.handshake_timeout);
    std::vector<SessionEvent> e = events(session);
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e.back().kind, Kind::closed);
    EXPECT_EQ(session.state(), ServerSession::State::closed);
}

TEST(Admission, OffByDefaultTheWelcomeGoesAtOnce) {
    ServerSessionConfig config;
    ServerSession session(config, 1, kStart);
    session.receive(wire({Hello{kProtocolVersion, 0, 0, "dev-5"}}), kStart);
    std::vector<Frame> out = sent(session);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(std::holds_alternative<Welcome>(out[0]));
    EXPECT_EQ(session.state(), ServerSession::State::open);
}

}  // namespace
}  // namespace lifeline
