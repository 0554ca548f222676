#include "runtime/output_queue.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "core/codec.hpp"

namespace lifeline::runtime {
namespace {

std::vector<std::uint8_t> frame(const Frame& f) {
    std::vector<std::uint8_t> out;
    EXPECT_TRUE(append_frame(out, f).ok());
    return out;
}

// The types of the frames waiting on `fd`, in order.
std::vector<FrameType> read_frame_types(int fd) {
    std::vector<std::uint8_t> bytes(1 << 20);
    const ssize_t n = ::recv(fd, bytes.data(), bytes.size(), MSG_DONTWAIT);
    std::vector<FrameType> types;
    if (n <= 0) return types;
    FrameDecoder decoder(DecoderRole::any);
    std::span<const std::uint8_t> input(bytes.data(), static_cast<std::size_t>(n));
    while (true) {
        auto step = decoder.next(input);
        if (!step.frame) break;
        types.push_back(frame_type(*step.frame));
    }
    return types;
}

TEST(OutputQueue, ControlFramesOvertakeQueuedDataAtAFrameBoundary) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    OutputQueue q(/*framed=*/true);
    const std::vector<std::uint8_t> payload(100, 7);
    const auto data = frame(Data{payload});
    // The first DATA frame is half on the wire already.
    q.push(std::span(data).subspan(50), false, /*already_started=*/true);
    q.push(data, false);
    q.push(data, false);
    const auto ping = frame(Ping{9, 0});
    q.push(ping, true);
    EXPECT_EQ(q.queued_bytes(), data.size() - 50 + 2 * data.size() + ping.size());
    // The peer first receives the first half, as the socket did.
    ASSERT_EQ(::send(sv[0], data.data(), 50, 0), 50);
    const auto r = q.flush(sv[0]);
    EXPECT_EQ(r.error, 0);
    EXPECT_FALSE(r.would_block);
    EXPECT_TRUE(q.empty());
    // The started frame finishes first, then the PING jumps the queued DATA.
    EXPECT_EQ(read_frame_types(sv[1]),
              (std::vector<FrameType>{FrameType::data, FrameType::ping, FrameType::data, FrameType::data}));
    ::close(sv[0]);
    ::close(sv[1]);
}

TEST(OutputQueue, WouldBlockKeepsTheRestAndReportsPeerGone) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    const int small = 4096;
    ASSERT_EQ(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    OutputQueue q(/*framed=*/false);
    const std::vector<std::uint8_t> big(1 << 20, 1);
    q.push(big, false);
    auto r = q.flush(sv[0]);
    EXPECT_TRUE(r.would_block);
    EXPECT_GT(r.written, 0u);
    EXPECT_EQ(q.queued_bytes(), big.size() - r.written);
    ::close(sv[1]);
    r = q.flush(sv[0]);
    EXPECT_EQ(r.error, EPIPE);
    ::close(sv[0]);
}

}  // namespace
}  // namespace lifeline::runtime
