#include "runtime/output_queue.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "lifeline/engine/codec.hpp"

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

// The io_uring sender's view: front(batch) hands out control frames first and
// then whole DATA frames up to the batch, and the span stays put while the
// kernel holds it, whatever is queued meanwhile.
TEST(OutputQueue, FrontBatchesWholeFramesControlFirstAndStaysPutWhileInFlight) {
    OutputQueue q(/*framed=*/true);
    const std::vector<std::uint8_t> data = frame(Data{std::vector<std::uint8_t>(100, 1)});  // 105 bytes
    const std::vector<std::uint8_t> pong = frame(Pong{1, 0});
    for (int i = 0; i < 3; ++i) q.push(data, false);
    q.push(pong, true);

    // 2 DATA frames fit in 250 bytes next to the PONG; a third would not.
    std::span<const std::uint8_t> first = q.front(pong.size() + 2 * data.size());
    ASSERT_EQ(first.size(), pong.size() + 2 * data.size());
    EXPECT_TRUE(std::equal(pong.begin(), pong.end(), first.begin()));
    EXPECT_EQ(q.behind_front(), data.size());

    const std::uint8_t* before = first.data();
    q.push(frame(Ping{2, 0}), true);  // Queued while the front is "in flight".
    q.push(data, false);
    EXPECT_EQ(q.front(1 << 20).data(), before) << "the in-flight span moved";

    q.consume(first.size() - 10);  // A short send: the rest comes first.
    std::span<const std::uint8_t> rest = q.front(1 << 20);
    EXPECT_EQ(rest.size(), 10u);
    q.consume(rest.size());

    // Then the PING that overtook, and the two DATA frames left, in one batch.
    std::span<const std::uint8_t> second = q.front(1 << 20);
    const std::vector<std::uint8_t> ping = frame(Ping{2, 0});
    ASSERT_EQ(second.size(), ping.size() + 2 * data.size());
    EXPECT_TRUE(std::equal(ping.begin(), ping.end(), second.begin()));
    q.consume(second.size());
    EXPECT_TRUE(q.front(1 << 20).empty());
    EXPECT_TRUE(q.empty());
}

// Without a batch, front() keeps flush()'s granularity: the control frames, or one DATA frame.
TEST(OutputQueue, FrontWithoutBatchIsOneFrameAtATime) {
    OutputQueue q(/*framed=*/true);
    const std::vector<std::uint8_t> data = frame(Data{std::vector<std::uint8_t>(10, 1)});
    q.push(data, false);
    q.push(data, false);
    EXPECT_EQ(q.front().size(), data.size());
    q.consume(data.size());
    EXPECT_EQ(q.front().size(), data.size());
    q.consume(data.size());
    EXPECT_TRUE(q.front().empty());
}

// A DATA frame larger than the batch still goes (alone): the batch never stalls the queue.
TEST(OutputQueue, AFrameLargerThanTheBatchGoesAlone) {
    OutputQueue q(/*framed=*/true);
    const std::vector<std::uint8_t> big = frame(Data{std::vector<std::uint8_t>(5000, 1)});
    q.push(big, false);
    q.push(big, false);
    EXPECT_EQ(q.front(1000).size(), big.size());
}

}  // namespace
}  // namespace lifeline::runtime
