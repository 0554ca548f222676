// examples/asio_server (lifeline/asio.hpp) against the real `lifeline
// connect`: the handshake and an echo, then a client frozen by SIGSTOP is
// declared dead with heartbeat_timeout within its timeout plus a slack only
// starvation crosses (tests/support/bounds.hpp). And the driver's client
// side, in process, against `lifeline serve`. Waits on output and events.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <lifeline/asio.hpp>
#include <string>

#include "support/bounds.hpp"
#include "support/child_process.hpp"

namespace {

using lifeline::testing::ChildProcess;
using namespace std::chrono_literals;

std::string start(ChildProcess& server) {
    const auto first = server.next_line(10s);  // "listening 127.0.0.1:PORT"
    if (!first || !first->starts_with("listening ")) return "";
    return first->substr(std::string("listening ").size());
}

TEST(AsioServer, AnswersLifelineConnectAndEchoesData) {
    ChildProcess server({ASIO_SERVER, "127.0.0.1:0"});
    const std::string address = start(server);
    ASSERT_FALSE(address.empty()) << "asio_server did not start";
    ChildProcess client({LIFELINE_BINARY, "connect", address, "--id", "asio-peer", "--heartbeat", "100ms"});
    ASSERT_TRUE(client.wait_for_event("hello", 10s).has_value()) << "`lifeline connect` got no WELCOME";
    client.write_stdin("echo-me\n");  // Only now: a line read before the session is open is refused.
    EXPECT_TRUE(client.wait_for_event("rtt", 10s).has_value()) << "asio_server did not answer a PING";
    EXPECT_TRUE(server.wait_for_line("message asio-peer echo-me", 10s)) << "the DATA frame did not arrive";
    client.signal(SIGTERM);
    const auto closed = client.wait_for_event("closed", 10s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_GE(closed->value("data_in", 0), 1) << "the echo did not come back";
    EXPECT_TRUE(server.wait_for_line("closed asio-peer peer_closed", 10s));
}

TEST(AsioServer, DeclaresAStoppedClientDeadWithinItsTimeout) {
    constexpr auto kTimeout = 600ms;
    ChildProcess server({ASIO_SERVER, "127.0.0.1:0"});
    const std::string address = start(server);
    ASSERT_FALSE(address.empty()) << "asio_server did not start";
    ChildProcess client({LIFELINE_BINARY, "connect", address, "--id", "frozen", "--heartbeat", "100ms", "--timeout",
                         std::to_string(kTimeout.count()) + "ms", "--no-stdin"});
    ASSERT_TRUE(server.wait_for_line("opened id=frozen timeout=600ms", 10s)) << "no handshake at the requested timeout";
    ASSERT_TRUE(client.wait_for_event("rtt", 10s).has_value()) << "no heartbeat answered before the freeze";

    const auto stopped_at = std::chrono::steady_clock::now();
    client.signal(SIGSTOP);  // The kernel still holds the socket open: only the heartbeat can tell.
    const auto bound = kTimeout + lifeline::testing::kSchedulingSlack;
    ASSERT_TRUE(server.wait_for_line("dead frozen heartbeat_timeout", bound + 5s))
        << "the frozen client was never declared dead";
    const auto latency = std::chrono::steady_clock::now() - stopped_at;
    EXPECT_LE(latency, bound) << "declared dead after "
                              << std::chrono::duration_cast<std::chrono::milliseconds>(latency).count() << " ms";
    EXPECT_GE(latency, kTimeout / 2) << "declared dead before its timeout could have passed";
    EXPECT_TRUE(server.wait_for_line("closed frozen heartbeat_timeout", 5s));
    client.signal(SIGCONT);
}

TEST(AsioClient, HeartbeatsWithLifelineServeAndClosesCleanly) {
    ChildProcess serve({LIFELINE_BINARY, "serve", "--listen", "127.0.0.1:0"});
    const auto listening = serve.wait_for_event("listening", 10s);
    ASSERT_TRUE(listening.has_value()) << "`lifeline serve` did not report `listening` within 10 s";
    const std::string address = listening->value("address", "");
    const auto colon = address.rfind(':');

    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address(address.substr(0, colon)),
                    static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))});
    lifeline::ClientSessionConfig config;
    config.id = "asio-client";
    config.heartbeat = lifeline::Duration::milliseconds(100);
    using Connection = lifeline::AsioConnection<lifeline::ClientSession>;
    std::vector<lifeline::SessionEventKind> seen;
    lifeline::DisconnectReason reason = lifeline::DisconnectReason::shutdown;
    int rtts = 0;
    auto connection = Connection::create(
        std::move(socket), std::make_unique<lifeline::ClientSession>(config, lifeline::asio_now()),
        [&](Connection& c, const lifeline::SessionEvent& e) {
            seen.push_back(e.kind);
            if (e.kind == lifeline::SessionEventKind::rtt && ++rtts == 3) {
                c.close(lifeline::CloseCode::normal, "done", lifeline::DisconnectReason::local_close);
            }
            if (e.kind == lifeline::SessionEventKind::closed) reason = e.reason;
        });
    connection->start();
    connection.reset();  // The pending handlers keep it alive until it is done.
    io.run_for(10s);     // Returns early once the connection is done: no work is left.
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.front(), lifeline::SessionEventKind::opened);
    EXPECT_EQ(rtts, 3);
    EXPECT_EQ(seen.back(), lifeline::SessionEventKind::closed);
    EXPECT_EQ(reason, lifeline::DisconnectReason::local_close);
    const auto closed = serve.wait_for_event("closed", 10s);
    ASSERT_TRUE(closed.has_value()) << "`lifeline serve` did not see the connection close";
    EXPECT_EQ(closed->value("id", ""), "asio-client");
    EXPECT_EQ(closed->value("reason", ""), "peer_closed") << "the CLOSE frame did not arrive before the socket closed";
}

}  // namespace
