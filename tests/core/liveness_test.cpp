#include "lifeline/engine/liveness.hpp"

#include <gtest/gtest.h>

#include "core/clock.hpp"

namespace lifeline {
namespace {

constexpr Duration kInterval = Duration::seconds(1);
constexpr Duration kTimeout = Duration::seconds(3);

struct Side {
    explicit Side(ManualClock& clock, bool pings)
        : detector(kTimeout, clock.now()), machine({kInterval, pings}, detector, clock.now()) {}
    FixedTimeoutDetector detector;
    LivenessMachine machine;
};

TEST(Liveness, IdleClientPingsEveryInterval) {
    ManualClock clock;
    Side client(clock, /*pings=*/true);
    EXPECT_EQ(client.machine.next_deadline(), clock.now() + kInterval);
    clock.advance(kInterval);
    client.machine.on_bytes_received(clock.now());  // The server is talking to us.
    LivenessStep step = client.machine.on_timer(clock.now());
    EXPECT_EQ(step.action, LivenessAction::send_ping);
    EXPECT_EQ(step.ping.seq, 1u);
    EXPECT_EQ(step.next_deadline, clock.now() + kInterval);
    clock.advance(kInterval);
    client.machine.on_bytes_received(clock.now());
    step = client.machine.on_timer(clock.now());
    EXPECT_EQ(step.action, LivenessAction::send_ping);
    EXPECT_EQ(step.ping.seq, 2u);
    EXPECT_EQ(client.machine.pings_sent(), 2u);
}

TEST(Liveness, BusySenderSendsNoPings) {
    ManualClock clock;
    Side client(clock, true);
    for (int i = 0; i < 100; ++i) {
        clock.advance(Duration::milliseconds(300));
        client.machine.on_bytes_sent(clock.now());
        client.machine.on_bytes_received(clock.now());
        if (clock.now() >= client.machine.next_deadline()) {
            EXPECT_EQ(client.machine.on_timer(clock.now()).action, LivenessAction::none);
        }
    }
    EXPECT_EQ(client.machine.pings_sent(), 0u);
}

TEST(Liveness, UploadingClientStillPingsOncePerIntervalToHearFromServer) {
    // The client only sends DATA; the server only answers PINGs. Without a PING
    // the client would hear nothing and convict a healthy server.
    ManualClock clock;
    Side client(clock, true);
    const Instant end = clock.now() + Duration::seconds(10);
    int pings = 0;
    Instant next_send = clock.now();
    while (clock.now() < end && !client.machine.dead()) {
        const Instant next = earliest(next_send, client.machine.next_deadline());
        clock.advance_to(next);
        if (clock.now() >= next_send) {
            client.machine.on_bytes_sent(clock.now());
            next_send = clock.now() + Duration::milliseconds(300);
        }
        if (clock.now() >= client.machine.next_deadline()) {
            const LivenessStep step = client.machine.on_timer(clock.now());
            if (step.action == LivenessAction::send_ping) {
                ++pings;
                // The PONG comes back 20 ms later.
                client.machine.on_bytes_received(clock.now() + Duration::milliseconds(20));
            }
        }
    }
    EXPECT_FALSE(client.machine.dead());
    EXPECT_GE(pings, 9);
    EXPECT_LE(pings, 10);
}

TEST(Liveness, LocalStallGivesThePeerAFreshGracePeriod) {
    ManualClock clock;
    Side server(clock, false);
    clock.advance(Duration::seconds(10));  // We were stopped for 10 s.
    server.machine.on_local_stall(clock.now());
    EXPECT_EQ(server.machine.on_timer(clock.now()).action, LivenessAction::none);
    EXPECT_EQ(server.machine.next_deadline(), clock.now() + kTimeout);
}

TEST(Liveness, ResponderNeverPingsAndConvictsAfterTimeout) {
    ManualClock clock;
    Side server(clock, /*pings=*/false);
    EXPECT_EQ(server.machine.next_deadline(), clock.now() + kTimeout);
    clock.advance(Duration::seconds(2));
    server.machine.on_bytes_received(clock.now());
    // The timer armed for the old deadline fires early: nothing to do, re-arm later.
    clock.advance(Duration::seconds(1));
    LivenessStep step = server.machine.on_timer(clock.now());
    EXPECT_EQ(step.action, LivenessAction::none);
    EXPECT_EQ(step.next_deadline, clock.now() + Duration::seconds(2));
    clock.advance_to(step.next_deadline);
    step = server.machine.on_timer(clock.now());
    EXPECT_EQ(step.action, LivenessAction::declare_dead);
    EXPECT_EQ(step.reason, DisconnectReason::heartbeat_timeout);
    EXPECT_TRUE(server.machine.dead());
    EXPECT_EQ(server.machine.next_deadline(), Instant::never());
    EXPECT_EQ(server.machine.on_timer(clock.now()).action, LivenessAction::none);
}

TEST(Liveness, AnyReceivedByteCountsEvenWithoutAWholeFrame) {
    ManualClock clock;
    Side server(clock, false);
    // A large frame trickles in over 10 s; each chunk keeps its sender alive.
    for (int i = 0; i < 10; ++i) {
        clock.advance(Duration::seconds(1));
        server.machine.on_bytes_received(clock.now());
        EXPECT_NE(server.machine.on_timer(clock.now()).action, LivenessAction::declare_dead);
    }
}

TEST(Liveness, PongAnsweringLatestPingGivesRttSample) {
    ManualClock clock;
    Side client(clock, true);
    clock.advance(kInterval);
    const LivenessStep step = client.machine.on_timer(clock.now());
    ASSERT_EQ(step.action, LivenessAction::send_ping);
    clock.advance(Duration::milliseconds(40));
    // A forged sent_at does not change the sample: only our own record counts.
    const auto sample = client.machine.on_pong(clock.now(), Pong{step.ping.seq, 12345});
    ASSERT_TRUE(sample.has_value());
    EXPECT_EQ(*sample, Duration::milliseconds(40));
    EXPECT_EQ(client.machine.rtt().smoothed(), Duration::milliseconds(40));
    // A duplicate or unknown PONG gives nothing.
    EXPECT_FALSE(client.machine.on_pong(clock.now(), Pong{step.ping.seq, 0}).has_value());
    EXPECT_FALSE(client.machine.on_pong(clock.now(), Pong{99, 0}).has_value());
}

TEST(Liveness, ClientConvictsSilentServer) {
    ManualClock clock;
    Side client(clock, true);
    int pings = 0;
    while (!client.machine.dead()) {
        clock.advance_to(client.machine.next_deadline());
        const LivenessStep step = client.machine.on_timer(clock.now());
        if (step.action == LivenessAction::send_ping) ++pings;
    }
    EXPECT_EQ(clock.now(), Instant::from_ns(0) + kTimeout);
    EXPECT_EQ(pings, 2);  // At 1 s and 2 s; at 3 s the server is convicted first.
}

TEST(Liveness, ConfigValidation) {
    EXPECT_TRUE((LivenessConfig{Duration::seconds(1), true}.validate().ok()));
    EXPECT_FALSE((LivenessConfig{Duration::zero(), true}.validate().ok()));
    EXPECT_FALSE((LivenessConfig{Duration::microseconds(500), true}.validate().ok()));
    EXPECT_TRUE((LivenessConfig{Duration::zero(), false}.validate().ok()));
}

}  // namespace
}  // namespace lifeline
