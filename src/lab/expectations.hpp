// Internal: what each cell of the lab must show, and the judgement of a
// measured cell against it. Pure logic: the lab's claims live here, in one
// table, and are unit-tested without a network.
#pragma once

#include <optional>
#include <vector>

#include "lab/lab_result.hpp"

namespace lifeline::lab {

struct SideExpectation {
    enum class Kind : unsigned char {
        detect,      // Must end, with one of `reasons`, within the budget + tolerance (or the limit).
        not_detect,  // Must not end within the lab's limit.
        either,      // May end or not; if it ends, the reason must be one of `reasons`.
        ignore,      // This side cannot report (its process was killed or wiped).
    };
    Kind kind = Kind::ignore;
    std::vector<DisconnectReason> reasons;
    std::optional<Duration> budget;  // Only for `detect`.
};

// What the cell may lose of the application data handed over (CellResult::lost_bytes).
enum class Loss : unsigned char {
    any,   // Not judged (no application data, or loss is not the point).
    none,  // Nothing may be lost: the mechanism kept the connection working.
    some,  // Something must be lost: the fault ate messages and nothing told the sender in time.
};

struct CellExpectation {
    SideExpectation server;
    SideExpectation client;
    Loss loss = Loss::any;
    std::optional<Duration> budget;  // For the table: the tightest promise that applies.
    Duration tolerance;
};

// Detection budgets of the mechanisms under `config`.
Duration heartbeat_budget(const LabConfig& config);
Duration keepalive_budget(const LabConfig& config);  // idle + interval x count

// Allowed lateness: 100 ms for heartbeats (a loop tick and scheduling), 1 s
// for the kernel (its timers run in jiffies and back off).
inline constexpr Duration kHeartbeatTolerance = Duration::milliseconds(100);
inline constexpr Duration kKernelTolerance = Duration::seconds(1);

CellExpectation expect(Fault fault, Mechanism mechanism, const LabConfig& config);

// Whether an application hands data over in this fault's cells (a push, or
// the client's messages), so that the cell can lose some.
bool carries_application_data(Fault fault);

// nat_expiry: whether the mechanism sends something on an idle flow at least
// once per NAT timeout, so the NAT never forgets it.
bool keeps_nat_flow(Mechanism mechanism, const LabConfig& config);

// Fills cell.budget, cell.tolerance, cell.as_expected and cell.findings.
void judge(CellResult& cell, const CellExpectation& expectation, Duration limit);

}  // namespace lifeline::lab
