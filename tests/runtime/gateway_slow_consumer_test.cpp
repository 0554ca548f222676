// A peer that stops reading while the application pushes to it with
// Server::send(). send() refuses at the output budget (`full`) instead of
// queueing past it, so the queue itself never exceeds the budget; the refusal
// must still start the slow-consumer clock, or such a peer is judged by
// nothing but TCP_USER_TIMEOUT (and with that off, by nothing at all: its
// heartbeats keep arriving). Here keepalive and the user timeout are off and
// the heartbeat timeout is a minute, so only the grace can end it.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "lifeline/server.hpp"
#include "net/loopback_pair.hpp"
#include "support/bounds.hpp"

namespace lifeline {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(SlowConsumer, ARefusedSendStartsTheClockAndTheGraceDecides) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.output_budget = 64 * 1024;
    o.slow_consumer_after = Duration::milliseconds(300);
    o.keepalive.enabled = false;
    o.keepalive.user_timeout.mode = UserTimeout::Mode::off;
    std::promise<Clock::time_point> full_at;
    std::promise<std::pair<DisconnectReason, Clock::time_point>> closed;
    std::unique_ptr<Server> server;
    ServerCallbacks c;
    c.on_open = [&](ConnectionId conn) {
        const std::vector<std::uint8_t> chunk(1024, 'x');
        for (int i = 0; i < 100'000; ++i) {
            Result<SendStatus> r = server->send(conn, chunk);
            if (r && *r == SendStatus::full) return full_at.set_value(Clock::now());
        }
        throw std::runtime_error("send() never said full");
    };
    c.on_close = [&](ConnectionId, DisconnectReason reason, const std::string&) {
        closed.set_value({reason, Clock::now()});
    };
    auto created = Server::create(o, std::move(c));
    ASSERT_TRUE(created) << created.error().message;
    server = std::move(*created);
    std::thread runner([&] { server->run(); });

    // Small fixed buffers on both ends (a fixed SO_SNDBUF also stops the
    // kernel from autotuning it up and taking the queue away from us).
    testing::LoopbackPair pair = testing::make_loopback_pair();
    const int sndbuf = 16 * 1024, rcvbuf = 4096;
    ASSERT_EQ(::setsockopt(pair.server.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    ASSERT_EQ(::setsockopt(pair.client.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    ASSERT_TRUE(server->adopt(pair.server.release()));
    std::vector<std::uint8_t> hello;
    ASSERT_TRUE(append_frame(hello, Hello{kProtocolVersion, 1000, 60'000, "hung-reader"}).ok());
    ASSERT_EQ(::send(pair.client.get(), hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));

    std::future<Clock::time_point> full = full_at.get_future();
    std::future<std::pair<DisconnectReason, Clock::time_point>> end = closed.get_future();
    const bool filled = full.wait_for(10s) == std::future_status::ready;
    const bool ended = filled && end.wait_for(10s) == std::future_status::ready;
    server->stop();
    runner.join();
    ASSERT_TRUE(filled) << "the queue never filled";
    ASSERT_TRUE(ended) << "the hung reader was never closed";
    const auto [reason, at] = end.get();
    EXPECT_EQ(reason, DisconnectReason::slow_consumer);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(at - full.get());
    EXPECT_GE(took, 250ms);  // The grace, less the loop clock read at the start of its turn.
    EXPECT_LE(took, 300ms + testing::kSchedulingSlack);
}

}  // namespace
}  // namespace lifeline
