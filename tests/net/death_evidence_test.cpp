// net::death_evidence (what `lifeline reap` acts on): the kernel's evidence
// that a peer is gone, and the look-alikes that are not evidence.
#include <gtest/gtest.h>

#include "net/connection_health.hpp"

namespace lifeline::net {
namespace {

DiagSocket established(Duration since_ack) {
    DiagSocket s;
    s.state = sys::TcpState::established;
    s.info = sys::TcpInfo{};
    s.info->state = sys::TcpState::established;
    s.info->last_ack_received = since_ack;
    return s;
}

TEST(DeathEvidence, UnackedDataRetransmittedWithoutAnAckIsEvidence) {
    DiagSocket s = established(Duration::seconds(5));
    s.timer = SocketTimer::retransmit;
    s.info->unacked = 4;
    s.info->retransmits = 3;
    s.info->backoff = 3;
    const auto e = death_evidence(s, Duration::seconds(2));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Verdict::retransmitting);
    EXPECT_EQ(e->silent_for, Duration::seconds(5));
    EXPECT_NE(e->description.find("4 segments unacked"), std::string::npos) << e->description;
}

TEST(DeathEvidence, UnansweredKeepaliveProbesAreEvidence) {
    DiagSocket s = established(Duration::seconds(12));
    s.timer = SocketTimer::keepalive;
    s.timer_retransmits = 2;
    const auto e = death_evidence(s, Duration::seconds(10));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Verdict::probing);
}

TEST(DeathEvidence, RecentAckOrNoRetransmissionOrZeroWindowIsNot) {
    DiagSocket recent = established(Duration::milliseconds(500));
    recent.info->unacked = 4;
    recent.info->retransmits = 3;
    EXPECT_FALSE(death_evidence(recent, Duration::seconds(1)));

    DiagSocket in_flight = established(Duration::seconds(5));  // Unacked but never retransmitted: just slow.
    in_flight.info->unacked = 4;
    EXPECT_FALSE(death_evidence(in_flight, Duration::seconds(1)));

    DiagSocket idle = established(Duration::hours(1));  // Idle for long, nothing asked of the peer.
    idle.timer = SocketTimer::keepalive;
    EXPECT_FALSE(death_evidence(idle, Duration::seconds(1)));

    DiagSocket zero_window = established(Duration::seconds(30));  // Window probes are not keepalive probes.
    zero_window.timer = SocketTimer::zero_window_probe;
    zero_window.info->probes = 3;
    EXPECT_FALSE(death_evidence(zero_window, Duration::seconds(1)));

    DiagSocket listening = established(Duration::hours(1));
    listening.state = sys::TcpState::listen;
    listening.info->unacked = 4;
    listening.info->retransmits = 3;
    EXPECT_FALSE(death_evidence(listening, Duration::seconds(1)));
}

}  // namespace
}  // namespace lifeline::net
