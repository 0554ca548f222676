// ServerSessions: many sessions on one wheel, driven like a loop would.
#include "lifeline/engine/sessions.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "lifeline/engine/client_session.hpp"

namespace lifeline {
namespace {

const Instant kStart = Instant::from_ns(1'000'000'000);
Duration ms(std::int64_t n) { return Duration::milliseconds(n); }

// N clients against one ServerSessions, bytes delivered at once; `silent`
// clients' bytes are lost after the handshake.
struct Fleet {
    ServerSessionConfig server_config;
    ClientSessionConfig client_config;
    Instant now = kStart;
    std::unique_ptr<ServerSessions> sessions;
    std::map<ServerSessions::Id, std::unique_ptr<ClientSession>> clients;
    std::map<ServerSessions::Id, DisconnectReason> closed;
    std::set<ServerSessions::Id> silent;

    void start(int n) {
        server_config.heartbeat = ms(100);
        server_config.timeout = ms(300);
        client_config.heartbeat = ms(100);
        client_config.timeout = ms(300);
        sessions = std::make_unique<ServerSessions>(server_config, now);
        for (int i = 0; i < n; ++i) clients[sessions->open(now)] = std::make_unique<ClientSession>(client_config, now);
        pump();
    }
    void pump() {
        for (int round = 0; round < 10; ++round) {
            for (auto& [id, c] : clients) {
                if (c->state() != ClientSession::State::closed && now >= c->next_timeout()) c->handle_timeout(now);
                std::vector<std::uint8_t> out;
                while (auto t = c->poll_transmit()) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
                while (c->poll_event()) {
                }
                if (!out.empty() && !silent.contains(id)) sessions->receive(id, out, now);
            }
            sessions->handle_timeouts(now);
            while (auto id = sessions->poll_ready()) {
                ServerSession& s = *sessions->find(*id);
                std::vector<std::uint8_t> out;
                while (auto t = s.poll_transmit()) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
                while (auto e = s.poll_event()) {
                    if (e->kind == SessionEventKind::closed) closed[*id] = e->reason;
                }
                if (!out.empty() && clients.contains(*id)) clients[*id]->receive(out, now);
                if (s.state() == ServerSession::State::closed) sessions->remove(*id);
            }
        }
    }
    void run_for(Duration d, Duration step = ms(10)) {
        for (const Instant end = now + d; now < end;) {
            now = now + step;
            pump();
        }
    }
};

TEST(ServerSessions, SilentPeersAreDeadAtTheirTimeoutAndTheRestStayOpen) {
    Fleet f;
    f.start(200);
    ASSERT_EQ(f.sessions->size(), 200u);
    for (ServerSessions::Id id = 1; id <= 200; id += 10) f.silent.insert(id);  // 20 go quiet.
    f.run_for(ms(280));
    EXPECT_TRUE(f.closed.empty()) << "nobody is dead before the 300 ms timeout";
    f.run_for(ms(60));  // One 10 ms step past the timeout, plus the 1 ms tick.
    EXPECT_EQ(f.closed.size(), 20u);
    for (const auto& [id, reason] : f.closed) {
        EXPECT_TRUE(f.silent.contains(id)) << id;
        EXPECT_EQ(reason, DisconnectReason::heartbeat_timeout);
    }
    EXPECT_EQ(f.sessions->size(), 180u);
    f.run_for(ms(2000));
    EXPECT_EQ(f.closed.size(), 20u) << "the healthy 180 keep their heartbeats";
}

TEST(ServerSessions, AHandshakeThatNeverComesTimesOutOnTheWheel) {
    ServerSessionConfig config;
    config.handshake_timeout = ms(500);
    ServerSessions sessions(config, kStart);
    const auto id = sessions.open(kStart);
    EXPECT_EQ(sessions.poll_ready(), id);
    EXPECT_EQ(sessions.poll_ready(), std::nullopt);
    EXPECT_LE(sessions.next_timeout(), kStart + ms(500));
    EXPECT_EQ(sessions.handle_timeouts(kStart + ms(499)), 0u);
    EXPECT_EQ(sessions.handle_timeouts(kStart + ms(501)), 1u);
    ASSERT_EQ(sessions.poll_ready(), id);
    EXPECT_EQ(sessions.find(id)->state(), ServerSession::State::closed);
    sessions.remove(id);
    EXPECT_EQ(sessions.find(id), nullptr);
    EXPECT_TRUE(sessions.next_timeout().is_never());
}

TEST(ServerSessions, UnknownIdsAreRefusedOrIgnored) {
    ServerSessionConfig config;
    ServerSessions sessions(config, kStart);
    const std::vector<std::uint8_t> bytes{1, 2, 3};
    const Result<void> r = sessions.send(42, bytes);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::not_open);
    sessions.receive(42, bytes, kStart);  // Ignored: removed or never there.
    EXPECT_EQ(sessions.poll_ready(), std::nullopt);
    const auto id = sessions.open(kStart);
    sessions.remove(id);
    EXPECT_EQ(sessions.poll_ready(), std::nullopt) << "a removed session is never handed out";
}

}  // namespace
}  // namespace lifeline
