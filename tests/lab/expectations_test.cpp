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

CellResult detected(Fault f, Mechanism m, R reason, Duration latency) {
    CellResult c{f, m, {}, {}, {}, {}, {}, {}, true, {}};
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

    CellResult missed{Fault::freeze, Mechanism::heartbeat, {}, {}, {}, {}, {}, {}, true, {}};
    judge(missed, expect(missed.fault, missed.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(missed.as_expected);
    EXPECT_NE(missed.findings.front().find("MISSED"), std::string::npos);

    CellResult stall = detected(Fault::server_stall, Mechanism::heartbeat, R::heartbeat_timeout, Duration::seconds(2));
    judge(stall, expect(stall.fault, stall.mechanism, kConfig), kConfig.limit);
    ASSERT_EQ(stall.findings.size(), 2u);  // Both sides convicted a live peer.
    EXPECT_NE(stall.findings.front().find("UNEXPECTED"), std::string::npos);
}

TEST(LabJudge, AClosingBeforeTheFaultIsAFinding) {
    CellResult c = detected(Fault::freeze, Mechanism::heartbeat, R::heartbeat_timeout, Duration::milliseconds(-500));
    judge(c, expect(c.fault, c.mechanism, kConfig), kConfig.limit);
    ASSERT_FALSE(c.as_expected);
    EXPECT_NE(c.findings.front().find("before the fault"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::lab
