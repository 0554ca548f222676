// End-to-end on loopback: the output budget, backpressure and what a closed
// connection reports. The real `lifeline serve` and a healthy `lifeline
// connect` (tests/runtime/e2e_support.hpp); raw sockets from the test misbehave.
// The same faults over a real (namespaced) network, where a path can die:
// backpressure_netns_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/e2e_support.hpp"

namespace lifeline {
namespace {

using namespace e2e;

TEST(Backpressure, PeerThatStopsReadingIsClosedAsSlowConsumer) {
    const auto started = Steady::now();
    ServerProcess server = start_server({"--echo", "--output-budget", "65536", "--slow-consumer-after", "1s"});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    Fd fd = connect_raw(server.port, /*rcvbuf=*/4096);
    const std::string peer = local_name(fd.get());
    ASSERT_TRUE(handshake(fd.get(), "stops-reading", 1000, 10000).has_value());

    // DATA frames of 16 KiB, echoed by the server into a socket nobody reads.
    const std::vector<std::uint8_t> payload(16 * 1024, 0x5a);
    const std::vector<std::uint8_t> frame = encode(Data{payload});
    constexpr std::size_t kMaxBytes = 64u << 20;
    std::size_t sent = 0, offset = 0;
    int send_error = 0;
    const auto deadline = Steady::now() + 15s;
    while (sent < kMaxBytes && Steady::now() < deadline) {
        const ssize_t n = ::send(fd.get(), frame.data() + offset, frame.size() - offset, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            offset = (offset + static_cast<std::size_t>(n)) % frame.size();
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            send_error = errno;
            break;
        }
        pollfd p{fd.get(), POLLOUT, 0};
        ::poll(&p, 1, 100);
    }
    EXPECT_TRUE(send_error == ECONNRESET || send_error == EPIPE)
        << "the server did not drop the connection: sent " << sent << " bytes, error " << errno_text(send_error);

    const std::optional<Json> error = await_event(*server.log, "error", peer, 5s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), StartsWith("peer is not reading"));
    EXPECT_THAT(error->value("message", ""), HasSubstr("budget 65536"));
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 5s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "slow_consumer");
    // Backpressure: past the budget the server stopped reading (and echoing)
    // instead of taking in everything we sent; what it read is its budget,
    // the socket buffers and what was in flight, not the 64 MiB we offered.
    EXPECT_LT(closed->value("bytes_in", std::uint64_t{0}), std::uint64_t{4} << 20) << closed->dump();
    // What it echoed was handed over (data_out), and what never left its
    // queue is reported as dropped unsent: past the budget, at most a frame or so more.
    const std::uint64_t unsent = closed->value("bytes_unsent", std::uint64_t{0});
    EXPECT_GT(unsent, 65536u) << closed->dump();
    EXPECT_LE(closed->value("data_out", std::uint64_t{0}), closed->value("data_in", std::uint64_t{0}));
    EXPECT_GE(closed->value("data_out", std::uint64_t{0}) + 4096, unsent) << closed->dump();

    expect_healthy(healthy, server, from, wall_ms_now(), "StopsReading");
    std::printf("[ measured ] %zu bytes written before the server dropped us; server sent %llu\n", sent,
                static_cast<unsigned long long>(closed->value("bytes_out", std::uint64_t{0})));
    report("StopsReading", started);
}

// The other side of the output budget: a peer that reads as fast as it sends
// is never a slow consumer, however much it sends in one burst. 4 MiB of 1 KiB
// DATA frames against a 64 KiB budget, echoed while we keep reading: every
// byte must come back. (With --io uring the output of a whole turn is queued
// before the kernel sees any of it; once, that counted against the budget.)
TEST(Backpressure, AReaderThatKeepsUpIsNoSlowConsumerHoweverBigTheBurst) {
    const auto started = Steady::now();
    ServerProcess server = start_server({"--echo", "--output-budget", "65536"});
    Fd fd = connect_raw(server.port);
    const std::string peer = local_name(fd.get());
    ASSERT_TRUE(handshake(fd.get(), "bursty", 1000, 10000).has_value());

    const std::vector<std::uint8_t> one = encode(Data{std::vector<std::uint8_t>(1024, 0x42)});
    constexpr std::size_t kFrames = 4096;
    std::vector<std::uint8_t> burst;
    for (std::size_t i = 0; i < kFrames; ++i) burst.insert(burst.end(), one.begin(), one.end());

    std::vector<std::uint8_t> echoed;
    std::size_t sent = 0;
    bool closed = false;
    const auto deadline = Steady::now() + 20s;
    while (echoed.size() < burst.size() && !closed && Steady::now() < deadline) {
        pollfd p{fd.get(), static_cast<short>(POLLIN | (sent < burst.size() ? POLLOUT : 0)), 0};
        ::poll(&p, 1, 100);
        if (sent < burst.size()) {
            const ssize_t n = ::send(fd.get(), burst.data() + sent, burst.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) sent += static_cast<std::size_t>(n);
        }
        std::uint8_t buf[65536];
        const ssize_t got = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (got > 0) echoed.insert(echoed.end(), buf, buf + got);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed = true;
    }
    if (closed) {
        const std::optional<Json> why = await_event(*server.log, "closed", peer, 2s);
        ADD_FAILURE() << "the server closed a peer that was reading, after echoing " << echoed.size()
                      << " bytes: " << (why ? why->dump() : "no closed event");
    }
    ASSERT_EQ(echoed.size(), burst.size()) << "sent " << sent;
    const Frames frames = decode_frames(echoed);
    EXPECT_EQ(frames.error, "");
    EXPECT_EQ(frames.types.size(), kFrames);
    EXPECT_EQ(echoed, burst);
    report("Burst", started);
}

// Backpressure pauses reading from a framed peer; its PINGs then sit unread
// in the socket. That silence is not the peer's: with a heartbeat timeout
// (1 s) far shorter than the slow-consumer grace (3 s), a peer that keeps
// sending but stops reading is still judged by the output budget.
TEST(Backpressure, SilenceWhilePausedIsNotHeldAgainstAPeerThatStillSends) {
    const auto started = Steady::now();
    ServerProcess server = start_server({"--echo", "--output-budget", "65536", "--slow-consumer-after", "3s"});
    Fd fd = connect_raw(server.port, /*rcvbuf=*/4096);
    const std::string peer = local_name(fd.get());
    ASSERT_TRUE(handshake(fd.get(), "paused", 300, 1000).has_value());

    // Fill the server's queue for us with echoed DATA, then keep sending a
    // PING every 200 ms (the granted interval is 300 ms) and never read.
    const std::vector<std::uint8_t> data = encode(Data{std::vector<std::uint8_t>(16 * 1024, 0x5a)});
    std::size_t offset = 0;
    std::uint64_t seq = 0;
    auto next_ping = Steady::now();
    std::optional<Json> closed;
    const auto deadline = Steady::now() + 15s;
    while (!closed && Steady::now() < deadline) {
        const ssize_t n = ::send(fd.get(), data.data() + offset, data.size() - offset, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) offset = (offset + static_cast<std::size_t>(n)) % data.size();
        if (Steady::now() >= next_ping && offset == 0) {
            const std::vector<std::uint8_t> ping = encode(Ping{++seq, 0});
            [[maybe_unused]] const ssize_t p = ::send(fd.get(), ping.data(), ping.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            next_ping = Steady::now() + 200ms;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
        closed = await_event(*server.log, "closed", peer, 20ms);
    }
    if (!closed) closed = await_event(*server.log, "closed", peer, 5s);
    ASSERT_TRUE(closed.has_value()) << "the server never closed the peer that stopped reading";
    EXPECT_EQ(closed->value("reason", ""), "slow_consumer") << closed->dump();
    // Judged after its grace, not convicted by its 1 s heartbeat timeout.
    EXPECT_GE(duration_ms(*closed), 3000.0) << closed->dump();
    for (const Json& e : server.log->events()) {
        if (e.value("peer", "") == peer) {
            EXPECT_NE(e.value("reason", ""), "heartbeat_timeout") << e.dump();
        }
    }
    report("PausedSilence", started);
}

// The peer's address is recorded at accept: a connection that ends in a
// reset (the socket is dead when the event is written) still names it.
TEST(Backpressure, AResetConnectionStillNamesItsPeer) {
    const auto started = Steady::now();
    ServerProcess server = start_server({});
    Fd fd = connect_raw(server.port);
    const std::string peer = local_name(fd.get());
    ASSERT_TRUE(handshake(fd.get(), "resets", 1000, 10000).has_value());
    const linger reset{1, 0};  // close() sends RST.
    ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
    fd = Fd(-1);
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 5s);
    ASSERT_TRUE(closed.has_value()) << "no closed event naming " << peer;
    EXPECT_EQ(closed->value("reason", ""), "peer_reset") << closed->dump();
    EXPECT_EQ(closed->value("id", ""), "resets");
    report("ResetPeer", started);
}

}  // namespace
}  // namespace lifeline
