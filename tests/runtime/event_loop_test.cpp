// The event loop and the stream socket on their own, without a server or a
// client on top: timers, cross-thread posts, readiness, backpressure queueing.
#include "runtime/event_loop.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "runtime/stream_socket.hpp"

namespace lifeline::runtime {
namespace {

std::unique_ptr<EventLoop> make_loop() {
    EventLoopConfig config;
    config.tick = Duration::milliseconds(1);
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(config);
    EXPECT_TRUE(loop.ok()) << loop.error().message;
    return std::move(*loop);
}

// Records when its timer fired and stops the loop.
struct StopAtTimer final : LoopObject {
    explicit StopAtTimer(EventLoop& l) : loop(l) {}
    void on_io(std::uint32_t) override {}
    void on_timer() override {
        fired_at = loop.now();
        ++fired;
        loop.stop();
    }
    EventLoop& loop;
    Instant fired_at;
    int fired = 0;
};

TEST(EventLoop, ATimerFiresAtItsDeadlineNeverBefore) {
    auto loop = make_loop();
    StopAtTimer timer(*loop);
    const Instant deadline = loop->precise_now() + Duration::milliseconds(20);
    loop->schedule(timer, deadline);
    loop->run();
    EXPECT_EQ(timer.fired, 1);
    EXPECT_GE(timer.fired_at, deadline);
}

TEST(EventLoop, ACancelledTimerDoesNotFire) {
    auto loop = make_loop();
    StopAtTimer cancelled(*loop), stopper(*loop);
    loop->schedule(cancelled, loop->precise_now() + Duration::milliseconds(5));
    loop->schedule(stopper, loop->precise_now() + Duration::milliseconds(30));
    loop->cancel(cancelled);
    loop->run();
    EXPECT_EQ(cancelled.fired, 0);
    EXPECT_EQ(stopper.fired, 1);
}

TEST(EventLoop, WorkPostedFromAnotherThreadRunsOnTheLoopThread) {
    auto loop = make_loop();
    std::thread::id ran_on;
    std::atomic<int> runs{0};
    std::thread poster([&] {
        loop->post([&] {
            ran_on = std::this_thread::get_id();
            ++runs;
            loop->stop();
        });
    });
    const std::thread::id loop_thread = std::this_thread::get_id();
    loop->run();  // Returns only once the posted task stopped it: the eventfd woke the loop.
    poster.join();
    EXPECT_EQ(runs.load(), 1);
    EXPECT_EQ(ran_on, loop_thread);
}

// Reads what arrives on its socket until `want` bytes, then stops the loop.
struct Reader final : LoopObject {
    Reader(EventLoop& l, int fd, std::size_t w) : loop(l), socket(fd, /*framed=*/false), want(w) {}
    void on_io(std::uint32_t) override {
        std::vector<std::uint8_t> buf(64 * 1024);
        while (true) {
            const StreamSocket::ReadResult r = socket.read(buf);
            if (r.status != StreamSocket::ReadStatus::data) break;
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.bytes));
        }
        if (got.size() >= want) loop.stop();
    }
    void on_timer() override {}
    EventLoop& loop;
    StreamSocket socket;
    std::size_t want;
    std::vector<std::uint8_t> got;
};

TEST(StreamSocket, WhatTheKernelRefusesIsQueuedAndArrivesInOrder) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    const int small = 4096;
    ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    auto loop = make_loop();
    Reader reader(*loop, fds[1], 0);
    // Nobody reads yet: most of 1 MiB is refused by the kernel and queued.
    struct Writer final : LoopObject {
        void on_io(std::uint32_t) override { socket->flush(*loop, *this); }
        void on_timer() override {}
        EventLoop* loop = nullptr;
        StreamSocket* socket = nullptr;
    } writer;
    StreamSocket out(fds[0], /*framed=*/false);
    writer.loop = loop.get();
    writer.socket = &out;
    ASSERT_TRUE(out.watch(*loop, writer).ok());
    std::vector<std::uint8_t> data(1 << 20);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
    const StreamSocket::SendResult sent = out.send(*loop, writer, data, /*control=*/false);
    ASSERT_EQ(sent.error, 0);
    EXPECT_LT(sent.written_now, data.size());
    EXPECT_EQ(out.queued_bytes(), data.size() - sent.written_now);
    // Now read: EPOLLOUT drains the queue as the reader makes room.
    reader.want = data.size();
    ASSERT_TRUE(reader.socket.watch(*loop, reader).ok());
    loop->run();
    EXPECT_EQ(out.queued_bytes(), 0u);
    EXPECT_EQ(out.bytes_out(), data.size());
    EXPECT_EQ(reader.got, data);
}

TEST(StreamSocket, EndOfStreamAndErrorsAreReportedAsSuch) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    StreamSocket s(fds[0], false);
    std::vector<std::uint8_t> buf(16);
    EXPECT_EQ(s.read(buf).status, StreamSocket::ReadStatus::would_block);
    ::close(fds[1]);
    EXPECT_EQ(s.read(buf).status, StreamSocket::ReadStatus::eof);
}

}  // namespace
}  // namespace lifeline::runtime
