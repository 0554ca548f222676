#include "net/tcp_info.hpp"

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cerrno>

#include "loopback_pair.hpp"

namespace lifeline::net {
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
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &idle), DisconnectReason::keepalive_timeout);
    TcpInfo busy;
    busy.unacked = 3;
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, &busy), DisconnectReason::user_timeout);
    EXPECT_EQ(classify_socket_error(ETIMEDOUT, nullptr), DisconnectReason::keepalive_timeout);
    EXPECT_EQ(classify_socket_error(EHOSTUNREACH, nullptr), DisconnectReason::unreachable);
    EXPECT_EQ(classify_socket_error(ENETUNREACH, nullptr), DisconnectReason::unreachable);
    EXPECT_EQ(classify_socket_error(ECONNRESET, nullptr), DisconnectReason::peer_reset);
    EXPECT_EQ(classify_socket_error(EPIPE, nullptr), DisconnectReason::peer_reset);
    EXPECT_EQ(classify_socket_error(0, nullptr), DisconnectReason::peer_closed);
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
}  // namespace lifeline::net
