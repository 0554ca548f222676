// Internal: the network lab's report. Everything here reads a LabRun and never
// changes it; only write_report touches the file system. All functions may be
// called from any thread (they share no state).
//
// Four views of one run:
//   render_table         the terminal table printed by `lifeline lab` and `make run`;
//   render_wire_summary  what the keepalive probes did on the wire, one line per cell;
//   to_json              the whole run, for scripts (lab.json);
//   render_html          one self-contained page, matrix plus per-cell timelines (lab.html).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "lab/lab_result.hpp"
#include "lifeline/result.hpp"

namespace lifeline::lab {

// The human table: a config header line (the knobs, including the NAT timeout
// and "· IPv6" when the hosts used IPv6; kernel; start), one row per cell
// grouped by fault (a rule between faults), the findings of unexpected cells
// as numbered footnotes, a legend line and a "N cells, M as expected" summary
// line. Columns: fault, mechanism, detected, by (the side that detected first
// comes first), reason (of the first detection), latency, budget, ratio
// (latency / budget), lost (CellResult::lost_bytes in binary units with at
// most three significant digits: "0", "37 B", "1.2 KiB", "3.1 MiB"; "—" when
// the cell carries no application data), probes (keepalive probes on the
// wire, "—" when the run captured nothing) and verdict ("ok", or "✗ LATE [1]"
// and the like).
// Every table line has the same display width. With `color`, the verdict is
// green or red (ANSI escapes); nothing else is coloured.
std::string render_table(const LabRun& run, bool color);

// For each keepalive cell (keepalive, keepalive+user_timeout, all) with
// captured probes, one line in the manner of the classic tcpdump demo:
//   cable_pull/keepalive: server probes at +1.00s +2.00s +3.00s (spacing 1.00s), then server
//   keepalive_timeout at +4.01s
// Times are relative to the fault. Empty when no cell has captured probes.
std::string render_wire_summary(const LabRun& run);

// Everything in the run. Durations are milliseconds (integers when whole),
// unset values are null, reasons use lifeline::to_string(DisconnectReason).
// "config" holds every LabConfig knob ("nat_timeout_ms", "ipv6" a bool, ...);
// each cell has "lost_bytes" (an integer, null when the cell carries no
// application data). Also derived per cell: "probes" (null when nothing was
// captured) and "verdict" (as in the table, without the ✗). Strings are
// copied as they are; dump with error_handler_t::replace if they might not be
// valid UTF-8.
nlohmann::json to_json(const LabRun& run);

// One self-contained HTML page (inline CSS and SVG, no scripts, no external
// URLs): the config as in the table's header, the fault × mechanism matrix in
// green / grey / red at the top (a cell names its lost bytes when not zero),
// then per fault each cell's facts ("lost: 1.2 KiB" among them) and one SVG
// timeline per cell (exactly one <svg> element per cell).
// All text from the run is HTML-escaped. Data and ACK ticks are thinned to at
// most 50 per cell, so a full run (every fault × every mechanism) stays well
// under a megabyte.
std::string render_html(const LabRun& run);

// Creates `directory` (and its parents) if missing and writes lab.json
// (pretty-printed, 2-space indent) and lab.html into it, each atomically.
// Errors: the directory cannot be created, or a file cannot be written; the
// message names the path and the errno text.
Result<void> write_report(const LabRun& run, const std::string& directory);

}  // namespace lifeline::lab
