// The own-loop examples against the real binary: own_loop_client with
// `lifeline serve`, `lifeline connect` with own_loop_server. Each side waits
// on the other's output lines with generous deadlines, never on sleeps.
#include <gtest/gtest.h>

#include <csignal>
#include <string>

#include "support/child_process.hpp"

namespace {

using lifeline::testing::ChildProcess;
using namespace std::chrono_literals;

TEST(OwnLoop, ClientCompletesHandshakeAndHeartbeatsWithLifelineServe) {
    ChildProcess serve({LIFELINE_BINARY, "serve", "--listen", "127.0.0.1:0"});
    const auto listening = serve.wait_for_event("listening", 10s);
    ASSERT_TRUE(listening.has_value()) << "`lifeline serve` did not report `listening` within 10 s";
    const std::string address = listening->value("address", "");

    ChildProcess client({OWN_LOOP_CLIENT, address, "3"});
    EXPECT_TRUE(client.wait_for_line("opened id=own-loop", 10s)) << "no WELCOME from `lifeline serve`";
    EXPECT_TRUE(client.wait_for_line("rtt ", 10s)) << "no RTT sample";
    EXPECT_TRUE(client.wait_for_line("closed local_close", 10s)) << "the client did not close cleanly";
    EXPECT_EQ(client.wait_exit(10s), 0);

    const auto hello = serve.wait_for(
        [](const ChildProcess::Json& j) { return j.value("event", "") == "hello" && j.value("id", "") == "own-loop"; },
        10s);
    EXPECT_TRUE(hello.has_value()) << "`lifeline serve` saw no HELLO with the id own-loop";
    EXPECT_EQ(hello->value("interval_ms", 0.0), 100.0) << "the requested 100 ms interval was not granted";
    const auto closed = serve.wait_for_event("closed", 10s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "peer_closed");
}

TEST(OwnLoop, ServerAnswersLifelineConnectAndEchoesData) {
    ChildProcess server({OWN_LOOP_SERVER, "127.0.0.1:0"});
    const auto first = server.next_line(10s);  // "listening 127.0.0.1:PORT"
    ASSERT_TRUE(first.has_value() && first->starts_with("listening ")) << "own_loop_server did not start";
    const std::string address = first->substr(std::string("listening ").size());

    ChildProcess client({LIFELINE_BINARY, "connect", address, "--id", "cli-peer", "--heartbeat", "100ms"});
    const auto hello = client.wait_for_event("hello", 10s);
    ASSERT_TRUE(hello.has_value()) << "`lifeline connect` got no WELCOME from own_loop_server";
    client.write_stdin("echo-me\n");  // Only now: a line read before the session is open is refused.
    EXPECT_EQ(hello->value("id", ""), "cli-peer");
    EXPECT_TRUE(client.wait_for_event("rtt", 10s).has_value()) << "own_loop_server did not answer a PING";
    EXPECT_TRUE(server.wait_for_line("opened id=cli-peer", 10s));
    EXPECT_TRUE(server.wait_for_line("message cli-peer echo-me", 10s)) << "the DATA frame did not arrive";

    // The echo: the client counts the DATA it received in its `closed` event.
    client.signal(SIGTERM);
    const auto closed = client.wait_for_event("closed", 10s);
    ASSERT_TRUE(closed.has_value()) << "`lifeline connect` reported no `closed` after SIGTERM";
    EXPECT_GE(closed->value("data_in", 0), 1) << "the echo did not come back";
    EXPECT_TRUE(server.wait_for_line("closed cli-peer", 10s)) << "own_loop_server did not see the close";
}

}  // namespace
