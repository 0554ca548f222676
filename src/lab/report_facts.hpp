// Internal to the lab's report (report_*.cpp): the facts every view derives
// from a cell (who detected, the verdict, probe counts) and the formatting the
// views share, so the table, the JSON and the HTML page never disagree. Pure
// functions of their arguments; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lab/lab_result.hpp"

namespace lifeline::lab::report_detail {

inline constexpr std::string_view kDash = "—";

struct Detection {
    Side side;
    const SideOutcome* outcome;  // Points into the cell it came from.
};

// The sides that detected, earliest first (the server first on a tie).
std::vector<Detection> detections(const CellResult& cell);
const SideOutcome& outcome_of(const CellResult& cell, Side side);
// Keepalive probes after the fault.
std::size_t count_probes(const CellResult& cell);
// keepalive, keepalive+user_timeout and all: the cells whose probes are worth listing.
bool is_keepalive_mechanism(Mechanism mechanism);
// The detection's reason, "?" when it gave none.
std::string reason_name(const SideOutcome& outcome);
// "server", "client", or both with the earlier one first ("client+server"); "—" for none.
std::string detected_by(const std::vector<Detection>& found);
// "cable_pull/keepalive".
std::string cell_name(const CellResult& cell);

// The kinds of "not as expected", as the table names them.
enum class Verdict : unsigned char { missed, wrong_reason, late, unexpected };

// Empty when the cell is as expected; otherwise the distinct kinds of trouble
// in the order the findings name them (read from the data when the findings
// name none we recognise).
std::vector<Verdict> verdicts(const CellResult& cell);
// "ok", or "LATE" / "LATE, WRONG REASON".
std::string verdict_text(const std::vector<Verdict>& kinds);

std::int64_t rounded_ms(Duration d);
// "1012 ms".
std::string format_ms(Duration d);
// "+100 ms", "+1 s", "+1.5 s".
std::string format_tolerance(Duration d);
// "+0.21s", "-1.50s": an instant relative to the fault.
std::string format_offset(Duration d);
// A byte count for people, in binary units with at most three significant
// digits: "0", "37 B", "999 B", "1 KiB", "1.2 KiB", "64 KiB", "3.1 MiB". A
// value that would round to 1000 or more of a unit is given in the next one
// ("1023 KiB" is "1 MiB"), so the text never grows past "999 KiB".
std::string format_bytes(std::uint64_t bytes);
// The cell's lost_bytes as format_bytes writes them, "—" when unset (the cell
// carries no application data).
std::string lost_text(const CellResult& cell);

// The run's knobs on one line: "keepalive 1s/1s×3, user timeout 4s, …, limit
// 12s, nat timeout 2s", followed by " · IPv6" when the hosts used IPv6.
std::string config_text(const LabRun& run);
// The legend's tolerance part ("; tolerance +100 ms heartbeats, +1 s kernel"),
// read from the cells rather than assumed; empty when no cell has a budget.
std::string tolerance_text(const LabRun& run);
std::size_t count_as_expected(const LabRun& run);
// Faults and mechanisms in the order the run's cells first name them.
std::vector<Fault> faults_in_order(const LabRun& run);
std::vector<Mechanism> mechanisms_in_order(const LabRun& run);

// Control characters (escape sequences, newlines) replaced by spaces, so the
// terminal interprets nothing the run carries.
std::string printable(std::string_view text);
// `text` with & < > " ' as HTML character references, safe in elements and
// quoted attributes alike.
std::string html_escape(std::string_view text);

}  // namespace lifeline::lab::report_detail
