// The io_uring half of the event loop on its own: a StreamSocket served by the
// loop's IoRing (multishot receive from the shared buffer ring, one send in
// flight, a turn's output leaving at the end of the turn), over a socketpair,
// with no server or client on top.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "runtime/event_loop.hpp"
#include "runtime/stream_socket.hpp"

namespace lifeline::runtime {
namespace {

std::unique_ptr<EventLoop> make_ring_loop() {
    EventLoopConfig config;
    config.tick = Duration::milliseconds(1);
    config.use_io_uring = true;
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(config);
    EXPECT_TRUE(loop.ok()) << loop.error().message;
    return loop.ok() ? std::move(*loop) : nullptr;
}

// Answers every receive with "pong:<what arrived>", and stops the loop once
// `stop_after_out` bytes have left.
struct RingEcho final : LoopObject {
    RingEcho(EventLoop& l, int fd) : loop(l), socket(fd, /*framed=*/false) {}
    void on_io(std::uint32_t) override {}
    void on_timer() override {}
    void on_ring(const RingCompletion& c) override {
        if (c.op == RingOp::receive) {
            const StreamSocket::ReadResult r = socket.received(loop, *this, c);
            if (r.status == StreamSocket::ReadStatus::eof) saw_eof = true;
            if (r.status != StreamSocket::ReadStatus::data) return;
            received.append(c.bytes.begin(), c.bytes.end());
            ++receives;
            const std::string reply = "pong:" + std::string(c.bytes.begin(), c.bytes.end());
            const auto* p = reinterpret_cast<const std::uint8_t*>(reply.data());
            ASSERT_EQ(socket.send(loop, *this, {p, reply.size()}, false).error, 0);
            EXPECT_EQ(socket.queued_bytes(), reply.size()) << "ring sends leave at the end of the turn, not at once";
        } else {
            ASSERT_EQ(socket.sent(loop, *this, c).error, 0);
            if (socket.bytes_out() >= stop_after_out) loop.stop();
        }
    }
    void on_ring_flush() override { socket.flush_turn(loop, *this); }
    EventLoop& loop;
    StreamSocket socket;
    std::string received;
    int receives = 0;
    bool saw_eof = false;
    std::uint64_t stop_after_out = 1;
};

std::string read_available(int fd) {
    std::string out;
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 0) > 0) {
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

TEST(IoRing, AReceiveIsAnsweredThroughTheRingWithNoSocketCallOfItsOwn) {
    auto loop = make_ring_loop();
    ASSERT_NE(loop, nullptr);
    ASSERT_NE(loop->ring(), nullptr);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    RingEcho echo(*loop, fds[0]);
    ASSERT_TRUE(echo.socket.watch(*loop, echo).ok());
    EXPECT_TRUE(echo.socket.served_by_ring());
    ASSERT_EQ(::write(fds[1], "ping", 4), 4);
    echo.stop_after_out = 9;  // "pong:ping"
    loop->run();
    EXPECT_EQ(echo.received, "ping");
    EXPECT_EQ(echo.socket.bytes_out(), 9u);
    EXPECT_EQ(read_available(fds[1]), "pong:ping");
    ::close(fds[1]);
}

TEST(IoRing, TheMultishotReceiveStaysArmedAcrossManyMessages) {
    auto loop = make_ring_loop();
    ASSERT_NE(loop, nullptr);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    RingEcho echo(*loop, fds[0]);
    ASSERT_TRUE(echo.socket.watch(*loop, echo).ok());
    // The peer writes one message at a time and waits for its answer, so each
    // arrives as a receive of its own on the one armed multishot receive.
    std::string expected_in, expected_out, replies;
    for (int i = 0; i < 50; ++i) {
        expected_in += "m" + std::to_string(i);
        expected_out += "pong:m" + std::to_string(i);
    }
    echo.stop_after_out = expected_out.size();
    std::thread peer([&] {
        for (int i = 0; i < 50; ++i) {
            const std::string msg = "m" + std::to_string(i);
            if (::write(fds[1], msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) return;
            const std::size_t want = replies.size() + 5 + msg.size();
            char buf[256];
            while (replies.size() < want) {
                pollfd p{fds[1], POLLIN, 0};
                ::poll(&p, 1, -1);
                const ssize_t n = ::read(fds[1], buf, sizeof(buf));
                if (n == 0) return;
                if (n > 0) replies.append(buf, static_cast<std::size_t>(n));
            }
        }
    });
    loop->run();
    peer.join();
    EXPECT_EQ(replies, expected_out);
    EXPECT_EQ(echo.received, expected_in);
    EXPECT_EQ(echo.receives, 50);
    EXPECT_TRUE(echo.socket.ring_busy()) << "the receive is still armed";
    ::close(fds[1]);
}

// Sends `total` bytes in one go and stops once the kernel has taken them all.
struct RingWriter final : LoopObject {
    RingWriter(EventLoop& l, int fd) : loop(l), socket(fd, /*framed=*/false) {}
    void on_io(std::uint32_t) override {}
    void on_timer() override {}
    void on_ring(const RingCompletion& c) override {
        if (c.op == RingOp::send) {
            ASSERT_EQ(socket.sent(loop, *this, c).error, 0);
            if (socket.queued_bytes() == 0) loop.stop();
        } else {
            (void)socket.received(loop, *this, c);
        }
    }
    void on_ring_flush() override { socket.flush_turn(loop, *this); }
    EventLoop& loop;
    StreamSocket socket;
};

TEST(IoRing, MoreThanTheSocketHoldsLeavesInOrderAsThePeerReads) {
    auto loop = make_ring_loop();
    ASSERT_NE(loop, nullptr);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    const int small = 4096;
    ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    RingWriter writer(*loop, fds[0]);
    ASSERT_TRUE(writer.socket.watch(*loop, writer).ok());
    std::vector<std::uint8_t> data(1 << 20);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 13 + i / 509);
    // Three sends in one turn: they must arrive as one stream, in order.
    const std::size_t third = data.size() / 3;
    const std::span<const std::uint8_t> all(data);
    ASSERT_EQ(writer.socket.send(*loop, writer, all.subspan(0, third), false).error, 0);
    ASSERT_EQ(writer.socket.send(*loop, writer, all.subspan(third, third), false).error, 0);
    ASSERT_EQ(writer.socket.send(*loop, writer, all.subspan(2 * third), false).error, 0);
    std::vector<std::uint8_t> got;
    std::thread reader([&] {  // Blocking reads until the whole megabyte is here.
        std::vector<std::uint8_t> buf(64 * 1024);
        while (got.size() < data.size()) {
            pollfd p{fds[1], POLLIN, 0};
            ::poll(&p, 1, -1);
            const ssize_t n = ::read(fds[1], buf.data(), buf.size());
            if (n == 0) break;
            if (n > 0) got.insert(got.end(), buf.begin(), buf.begin() + n);
        }
    });
    loop->run();
    reader.join();
    EXPECT_EQ(writer.socket.bytes_out(), data.size());
    EXPECT_EQ(got, data);
    ::close(fds[1]);
}

TEST(IoRing, EndOfStreamEndsTheReceive) {
    auto loop = make_ring_loop();
    ASSERT_NE(loop, nullptr);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    struct EofStopper final : LoopObject {
        EofStopper(EventLoop& l, int fd) : loop(l), socket(fd, false) {}
        void on_io(std::uint32_t) override {}
        void on_timer() override {}
        void on_ring(const RingCompletion& c) override {
            if (c.op == RingOp::receive && socket.received(loop, *this, c).status == StreamSocket::ReadStatus::eof) {
                eof = true;
                loop.stop();
            }
        }
        EventLoop& loop;
        StreamSocket socket;
        bool eof = false;
    } stopper(*loop, fds[0]);
    ASSERT_TRUE(stopper.socket.watch(*loop, stopper).ok());
    ::close(fds[1]);
    loop->run();
    EXPECT_TRUE(stopper.eof);
    EXPECT_FALSE(stopper.socket.ring_busy()) << "an ended receive is not re-armed";
}

}  // namespace
}  // namespace lifeline::runtime
