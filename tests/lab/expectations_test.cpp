// The lab's claims, as a table: these are what `lifeline lab` asserts about
// each cell, so a change here changes what the lab calls correct.
#include "lab/expectations.hpp"

#include <gtest/gtest.h>

namespace lifeline::lab {
namespace {

using Kind = SideExpectation::Kind;
using R = DisconnectReason;

const LabConfig kConfig;  // keepalive 1s/1s x3, user timeout 4s, heartbeat 250ms / 1s

TEST(LabExpectations, FreezeIsCaughtByHeartbeatsNotByKeepalive) {
    EXPECT_EQ(expect(Fault::freeze, Mechanism::heartbeat, kConfig).server.kind, Kind::detect);
    EXPECT_EQ(expect(Fault::freeze, Mechanism::websocket, kConfig).server.reasons,
              std::vector<R>{R::heartbeat_timeout});
    EXPECT_EQ(expect(Fault::freeze, Mechanism::all, kConfig).server.reasons, std::vector<R>{R::heartbeat_timeout});
    for (Mechanism m : {Mechanism::none, Mechanism::keepalive, Mechanism::keepalive_user_timeout})
        EXPECT_EQ(expect(Fault::freeze, m, kConfig).server.kind, Kind::not_detect) << to_string(m);
}

TEST(LabExpectations, TransferCutNeedsTheUserTimeoutNotKeepaliveAlone) {
    EXPECT_EQ(expect(Fault::transfer_cut, Mechanism::keepalive, kConfig).server.kind, Kind::not_detect);
    const CellExpectation ut = expect(Fault::transfer_cut, Mechanism::keepalive_user_timeout, kConfig);
    EXPECT_EQ(ut.server.kind, Kind::detect);
    EXPECT_EQ(ut.server.reasons, std::vector<R>{R::user_timeout});
    EXPECT_EQ(ut.server.budget, Duration::seconds(4));
}

TEST(LabExpectations, RunAndProtectGuardTheServerOnlyLikeKeepaliveWithUserTimeout) {
    for (Mechanism m : {Mechanism::run, Mechanism::protect}) {
        const CellExpectation pull = expect(Fault::cable_pull, m, kConfig);
        EXPECT_EQ(pull.server.kind, Kind::detect) << to_string(m);
        EXPECT_EQ(pull.server.reasons, std::vector<R>{R::keepalive_timeout});
        EXPECT_EQ(pull.client.kind, Kind::not_detect) << "the client has no mechanism";
        const CellExpectation cut = expect(Fault::transfer_cut, m, kConfig);
        EXPECT_EQ(cut.server.reasons, std::vector<R>{R::user_timeout});
        EXPECT_EQ(cut.server.budget, Duration::seconds(4));
        // Only the client would meet a rebooted server's RST, and it sends nothing.
        EXPECT_EQ(expect(Fault::server_reboot, m, kConfig).client.kind, Kind::not_detect);
        // The server's probes keep a NAT flow alive for both.
        EXPECT_TRUE(keeps_nat_flow(m, kConfig));
    }
}

TEST(LabExpectations, CablePullIsCaughtByAllButNone) {
    EXPECT_EQ(expect(Fault::cable_pull, Mechanism::none, kConfig).server.kind, Kind::not_detect);
    for (Mechanism m :
         {Mechanism::keepalive, Mechanism::keepalive_user_timeout, Mechanism::heartbeat, Mechanism::all}) {
        const CellExpectation e = expect(Fault::cable_pull, m, kConfig);
        EXPECT_EQ(e.server.kind, Kind::detect) << to_string(m);
        EXPECT_EQ(e.client.kind, Kind::detect) << to_string(m);
    }
    // The fastest applicable promise sets the cell's budget and tolerance.
    const CellExpectation all = expect(Fault::cable_pull, Mechanism::all, kConfig);
    EXPECT_EQ(all.budget, Duration::seconds(1));
    EXPECT_EQ(all.tolerance, kHeartbeatTolerance);
    const CellExpectation ka = expect(Fault::cable_pull, Mechanism::keepalive, kConfig);
    EXPECT_EQ(ka.budget, Duration::seconds(4));
    EXPECT_EQ(ka.tolerance, kKernelTolerance);
}

TEST(LabExpectations, NoLiveClientIsConvictedDuringAServerStall) {
    for (Mechanism m : kAllMechanisms) {
        const CellExpectation e = expect(Fault::server_stall, m, kConfig);
        EXPECT_EQ(e.server.kind, Kind::not_detect);
        EXPECT_EQ(e.client.kind, Kind::not_detect);
        EXPECT_FALSE(e.budget.has_value());
    }
}

TEST(LabExpectations, NatExpiryKeepsFlowsThatTalkMoreOftenThanTheNatForgets) {
    // Default: NAT 2 s; heartbeats every 250 ms, keepalive idle 1 s.
    EXPECT_FALSE(keeps_nat_flow(Mechanism::none, kConfig));
    for (Mechanism m :
         {Mechanism::keepalive, Mechanism::keepalive_user_timeout, Mechanism::heartbeat, Mechanism::all}) {
        const CellExpectation e = expect(Fault::nat_expiry, m, kConfig);
        EXPECT_EQ(e.loss, Loss::none) << to_string(m);
        EXPECT_EQ(e.server.kind, Kind::not_detect) << to_string(m);
        EXPECT_EQ(e.client.kind, Kind::not_detect) << to_string(m);
    }
    EXPECT_EQ(expect(Fault::nat_expiry, Mechanism::none, kConfig).loss, Loss::some);
    // A NAT quicker than keepalive's idle time forgets keepalive flows, not heartbeat ones.
    LabConfig quick = kConfig;
    quick.nat_timeout = Duration::milliseconds(800);
    EXPECT_FALSE(keeps_nat_flow(Mechanism::keepalive, quick));
    EXPECT_EQ(expect(Fault::nat_expiry, Mechanism::keepalive, quick).loss, Loss::some);
    EXPECT_EQ(expect(Fault::nat_expiry, Mechanism::keepalive, quick).server.kind, Kind::either);
    EXPECT_TRUE(keeps_nat_flow(Mechanism::heartbeat, quick));
}

TEST(LabExpectations, ServerRebootIsMetByTheClientThatSends) {
    EXPECT_EQ(expect(Fault::server_reboot, Mechanism::none, kConfig).client.kind, Kind::not_detect);
    const CellExpectation ka = expect(Fault::server_reboot, Mechanism::keepalive, kConfig);
    EXPECT_EQ(ka.client.kind, Kind::detect);
    EXPECT_EQ(ka.client.reasons.front(), R::peer_reset);
    EXPECT_EQ(ka.server.kind, Kind::ignore);  // Its process died with the host.
    EXPECT_EQ(expect(Fault::server_reboot, Mechanism::heartbeat, kConfig).client.budget, Duration::seconds(1));
}

TEST(LabExpectations, OnlyFaultsWithApplicationDataCanLoseIt) {
    for (Fault f : kAllFaults) {
        const bool data = f == Fault::transfer_cut || f == Fault::stuck_reader || f == Fault::nat_expiry;
        EXPECT_EQ(carries_application_data(f), data) << to_string(f);
    }
}

CellResult cell_of(Fault f, Mechanism m) {
    CellResult c;
    c.fault = f;
    c.mechanism = m;
    return c;
}

CellResult detected(Fault f, Mechanism m, R reason, Duration latency) {
    CellResult c = cell_of(f, m);
    c.server = SideOutcome{true, reason, latency, ""};
    c.client = SideOutcome{true, reason, latency, ""};
    return c;
}

TEST(LabJudge, OnTimeWithTheRightReasonIsAsExpected) {
    CellResult c =
        detected(Fault::cable_pull, Mechanism::heartbeat, R::heartbeat_timeout, Duration::milliseconds(1090));
    judge(c, expect(c.fault, c.mechanism, kConfig), kConfig.limit);
    EXPECT_TRUE(c.as_expected) << c.findings.front();
    EXPECT_EQ(c.budget, Duration::seconds(1));
}

TEST(LabJudge, LateWrongMissedAndUnexpectedAreFindings) {
    CellResult late =
        detected(Fault::cable_pull, Mechanism::heartbeat, R::heartbeat_timeout, Duration::milliseconds(1101));
    judge(late, expect(late.fault, late.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(late.as_expected);
    EXPECT_NE(late.findings.front().find("LATE"), std::string::npos);

    CellResult wrong =
        detected(Fault::transfer_cut, Mechanism::keepalive_user_timeout, R::keepalive_timeout, Duration::seconds(4));
    judge(wrong, expect(wrong.fault, wrong.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(wrong.as_expected);
    EXPECT_NE(wrong.findings.front().find("WRONG REASON keepalive_timeout"), std::string::npos);

    CellResult missed = cell_of(Fault::freeze, Mechanism::heartbeat);
    judge(missed, expect(missed.fault, missed.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(missed.as_expected);
    EXPECT_NE(missed.findings.front().find("MISSED"), std::string::npos);

    CellResult stall = detected(Fault::server_stall, Mechanism::heartbeat, R::heartbeat_timeout, Duration::seconds(2));
    judge(stall, expect(stall.fault, stall.mechanism, kConfig), kConfig.limit);
    ASSERT_EQ(stall.findings.size(), 2u);  // Both sides convicted a live peer.
    EXPECT_NE(stall.findings.front().find("UNEXPECTED"), std::string::npos);
}

TEST(LabJudge, LossIsJudgedWhereTheCellExpectsNoneOrSome) {
    CellResult kept = cell_of(Fault::nat_expiry, Mechanism::heartbeat);
    kept.lost_bytes = 0;
    judge(kept, expect(kept.fault, kept.mechanism, kConfig), kConfig.limit);
    EXPECT_TRUE(kept.as_expected);
    kept.lost_bytes = 11;
    judge(kept, expect(kept.fault, kept.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(kept.as_expected);
    EXPECT_NE(kept.findings.front().find("UNEXPECTED loss of 11 bytes"), std::string::npos);

    CellResult forgotten = cell_of(Fault::nat_expiry, Mechanism::none);
    forgotten.lost_bytes = 0;
    judge(forgotten, expect(forgotten.fault, forgotten.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(forgotten.as_expected);
    EXPECT_NE(forgotten.findings.front().find("nothing lost"), std::string::npos);
    forgotten.lost_bytes = std::nullopt;  // A side never reported.
    judge(forgotten, expect(forgotten.fault, forgotten.mechanism, kConfig), kConfig.limit);
    EXPECT_FALSE(forgotten.as_expected);
}

TEST(LabJudge, AClosingBeforeTheFaultIsAFinding) {
    CellResult c = detected(Fault::freeze, Mechanism::heartbeat, R::heartbeat_timeout, Duration::milliseconds(-500));
    judge(c, expect(c.fault, c.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(c.as_expected);
    EXPECT_NE(c.findings.front().find("before the fault"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::lab
