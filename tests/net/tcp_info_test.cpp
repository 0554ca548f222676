#include "lifeline/sys/tcp_info.hpp"

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cerrno>

#include "loopback_pair.hpp"

namespace lifeline::sys {
namespace {

using lifeline::testing::make_loopback_pair;

TEST(TcpInfo, ReadsAnEstablishedLoopbackConnection) {
    auto pair = make_loopback_pair();
    // One round trip so the RTT estimate exists.
    ASSERT_EQ(::send(pair.client.get(), "x", 1, 0), 1);
    char c = 0;
    ASSERT_EQ(::recv(pair.server.get(), &c, 1, 0), 1);
    ASSERT_EQ(::send(pair.server.get(), "y", 1, 0), 1);
    ASSERT_EQ(::recv(pair.client.get(), &c, 1, 0), 1);

    Result<TcpInfo> info = read_tcp_info(pair.client.get());
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(info->state, TcpState::established);
    EXPECT_GT(info->rtt, Duration::zero());
    EXPECT_LT(info->rtt, Duration::seconds(1));
    EXPECT_GE(info->rto, Duration::milliseconds(200));  // TCP_RTO_MIN
    EXPECT_EQ(info->retransmits, 0);
    EXPECT_EQ(info->probes, 0);
    EXPECT_LT(info->last_data_received, Duration::seconds(5));
    EXPECT_GT(info->snd_wnd, 0u);
    EXPECT_EQ(to_string(info->state), "established");
}

TEST(TcpInfo, ListenerState) {
    auto pair = make_loopback_pair();
    auto info = read_tcp_info(pair.listener.get());
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->state, TcpState::listen);
}

TEST(TcpInfo, ErrorNamesTheSocket) {
    auto r = read_tcp_info(-1);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().sys_errno, EBADF);
    EXPECT_NE(r.error().message.find("TCP_INFO"), std::string::npos);
}

TEST(ClassifySocketError, TellsKeepaliveFromUserTimeoutByUnackedData) {
    TcpInfo idle;
    idle.snd_wnd = 65535;
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &idle), DisconnectReason::keepalive_timeout);
    TcpInfo busy;
    busy.snd_wnd = 65535;
    busy.unacked = 3;
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &busy), DisconnectReason::user_timeout);
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, nullptr), DisconnectReason::keepalive_timeout);
    // Our own queue was not empty: data was in flight, so it was the user
    // timeout even when the kernel had already purged what tcp_info reports.
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &idle, /*output_pending=*/true), DisconnectReason::user_timeout);
    // The kernel already emptied its queue, but data left after the last ACK came.
    TcpInfo purged = idle;
    purged.last_ack_received = Duration::milliseconds(3200);
    purged.last_data_sent = Duration::milliseconds(3150);
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &purged), DisconnectReason::user_timeout);
    // The window was shut, then the path died: window probes went unanswered
    // until the user timeout, although ACKs to earlier probes came after the
    // last data (found by Backpressure.CablePulledMidTransfer under load).
    TcpInfo shut = idle;
    shut.snd_wnd = 0;
    shut.probes = 4;
    shut.last_ack_received = Duration::milliseconds(3000);
    shut.last_data_sent = Duration::milliseconds(3500);
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &shut), DisconnectReason::user_timeout);
    TcpInfo keepalive = idle;  // Idle: the last data was acknowledged, probes followed.
    keepalive.last_ack_received = Duration::milliseconds(3000);
    keepalive.last_data_sent = Duration::milliseconds(9000);
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &keepalive), DisconnectReason::keepalive_timeout);
    EXPECT_EQ(classify_socket_error(EHOSTUNREACH, nullptr), DisconnectReason::unreachable);
    EXPECT_EQ(classify_socket_error(ENETUNREACH, nullptr), DisconnectReason::unreachable);
    EXPECT_EQ(classify_socket_error(ECONNRESET, nullptr), DisconnectReason::peer_reset);
    EXPECT_EQ(classify_socket_error(EPIPE, nullptr), DisconnectReason::peer_reset);
    EXPECT_EQ(classify_socket_error(0, nullptr), DisconnectReason::peer_closed);
}

// TCP_USER_TIMEOUT also ends a peer that is alive but advertises a zero
// window: the last window probe was answered, nothing is unacknowledged, and
// data waits to go. Unanswered probes mean the peer vanished meanwhile.
TEST(ClassifySocketError, UserTimeoutOnALiveZeroWindowIsSlowConsumer) {
    TcpInfo stuck;
    stuck.snd_wnd = 0;
    stuck.notsent_bytes = 4096;
    stuck.probes = 1;
    stuck.backoff = 5;
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &stuck), DisconnectReason::slow_consumer);
    TcpInfo vanished = stuck;  // The probes backed off and went unanswered: the user timeout's verdict.
    vanished.probes = 4;
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &vanished), DisconnectReason::user_timeout);
    TcpInfo nothing_to_send = stuck;
    nothing_to_send.notsent_bytes = 0;
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &nothing_to_send), DisconnectReason::user_timeout);
}

TEST(ClassifyOutputStall, RetransmittingWithoutAcksIsADeadPath) {
    TcpInfo dead;
    dead.snd_wnd = 65535;
    dead.unacked = 10;
    dead.retransmits = 3;
    dead.rtt = Duration::milliseconds(1);
    dead.last_ack_received = Duration::milliseconds(1500);
    EXPECT_EQ(classify_output_stall(dead), OutputStall::path_dead);
    TcpInfo just_lost = dead;  // One retransmission, the ACK may still come.
    just_lost.last_ack_received = Duration::milliseconds(50);
    EXPECT_EQ(classify_output_stall(just_lost), OutputStall::peer_not_reading);
    TcpInfo far = dead;  // A long path: two RTTs have not passed yet.
    far.rtt = Duration::milliseconds(900);
    EXPECT_EQ(classify_output_stall(far), OutputStall::peer_not_reading);
}

TEST(ClassifyOutputStall, ZeroWindowIsNotReadingUntilProbesGoUnanswered) {
    TcpInfo stuck;
    stuck.snd_wnd = 0;
    stuck.probes = 1;
    stuck.backoff = 4;
    stuck.last_ack_received = Duration::milliseconds(800);
    EXPECT_EQ(classify_output_stall(stuck), OutputStall::peer_not_reading);
    stuck.probes = 2;
    EXPECT_EQ(classify_output_stall(stuck), OutputStall::path_dead);
    TcpInfo slow;  // A small open window, data unacknowledged but ACKs arriving.
    slow.snd_wnd = 512;
    slow.unacked = 2;
    slow.last_ack_received = Duration::milliseconds(5);
    EXPECT_EQ(classify_output_stall(slow), OutputStall::peer_not_reading);
}

TEST(ClassifySocketError, RealResetIsPeerReset) {
    auto pair = make_loopback_pair();
    // SO_LINGER 0 makes close() send RST.
    linger l{1, 0};
    ASSERT_EQ(::setsockopt(pair.server.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
    pair.server.reset();
    pollfd p{pair.client.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);  // Waits for the RST's arrival, bounded.
    int err = 0;
    socklen_t len = sizeof(err);
    ASSERT_EQ(::getsockopt(pair.client.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
    EXPECT_EQ(err, ECONNRESET);
    EXPECT_EQ(classify_socket_error(err, nullptr), DisconnectReason::peer_reset);
}

}  // namespace
}  // namespace lifeline::sys
