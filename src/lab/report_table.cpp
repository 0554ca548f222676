// The terminal views of a run: the table and the wire summary.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "lab/report.hpp"
#include "lab/report_facts.hpp"

namespace lifeline::lab {

using namespace report_detail;

namespace {

// Probe offsets listed per side in the wire summary before "… (N more)".
constexpr std::size_t kMaxProbesListed = 16;

// ---------------------------------------------------------------------------
// The table.

enum class Align : unsigned char { left, right };

struct Column {
    std::string_view title;
    Align align;
};

// Indices into kColumns, so a row's fields are filled by name.
enum ColumnIndex : std::size_t {
    kFaultColumn,
    kMechanismColumn,
    kDetectedColumn,
    kByColumn,
    kReasonColumn,
    kLatencyColumn,
    kBudgetColumn,
    kRatioColumn,
    kLostColumn,
    kProbesColumn,
    kVerdictColumn,
};

constexpr std::array kColumns = {
    Column{"fault", Align::left},   Column{"mechanism", Align::left}, Column{"detected", Align::left},
    Column{"by", Align::left},      Column{"reason", Align::left},    Column{"latency", Align::right},
    Column{"budget", Align::right}, Column{"ratio", Align::right},    Column{"lost", Align::right},
    Column{"probes", Align::right}, Column{"verdict", Align::left},
};
static_assert(kVerdictColumn == kColumns.size() - 1, "ColumnIndex names every column of kColumns, in order");
constexpr std::string_view kColumnGap = "  ";

using Fields = std::array<std::string, kColumns.size()>;
using Widths = std::array<std::size_t, kColumns.size()>;

// Columns on screen. Counts code points, which is right for everything the
// table prints: ASCII plus "—" and "✗", each one column wide.
std::size_t display_width(std::string_view text) {
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string padding(std::string_view text, std::size_t width) {
    const std::size_t w = display_width(text);
    return std::string(w < width ? width - w : 0, ' ');
}

std::string repeat(std::string_view piece, std::size_t count) {
    std::string out;
    out.reserve(piece.size() * count);
    for (std::size_t i = 0; i < count; ++i) out += piece;
    return out;
}

struct TableRow {
    Fields fields;
    bool ok = true;
    bool starts_group = false;
};

// "1.50": latency ÷ budget, "—" without both (or with a zero budget).
std::string ratio_text(const Duration* latency, const CellResult& cell) {
    if (!latency || !cell.budget || *cell.budget <= Duration::zero()) return std::string(kDash);
    return fmt::format("{:.2f}", latency->seconds_f() / cell.budget->seconds_f());
}

// "ok", or "✗ LATE [3]" after appending the cell's findings to `footnotes`
// (the numbers are their 1-based positions there).
std::string verdict_field(const CellResult& cell, const std::vector<Verdict>& kinds,
                          std::vector<std::string>& footnotes) {
    if (kinds.empty()) return "ok";
    std::string refs;
    for (const std::string& finding : cell.findings) {
        footnotes.push_back(cell_name(cell) + ": " + printable(finding));
        refs += (refs.empty() ? "" : ",") + std::to_string(footnotes.size());
    }
    return "✗ " + verdict_text(kinds) + (refs.empty() ? "" : " [" + refs + "]");
}

TableRow cell_row(const LabRun& run, const CellResult& cell, std::vector<std::string>& footnotes) {
    const std::vector<Detection> found = detections(cell);
    const std::vector<Verdict> kinds = verdicts(cell);
    // A pointer, not an optional: GCC 12 misreads the optional as maybe uninitialized.
    const Duration* latency = found.empty() ? nullptr : &found.front().outcome->latency;
    TableRow row;
    row.ok = kinds.empty();
    Fields& f = row.fields;
    f[kFaultColumn] = std::string(to_string(cell.fault));
    f[kMechanismColumn] = std::string(to_string(cell.mechanism));
    f[kDetectedColumn] = found.empty() ? "no" : "yes";
    f[kByColumn] = detected_by(found);
    f[kReasonColumn] = found.empty() ? std::string(kDash) : reason_name(*found.front().outcome);
    f[kLatencyColumn] = latency ? format_ms(*latency) : std::string(kDash);
    f[kBudgetColumn] = cell.budget ? format_ms(*cell.budget) : std::string(kDash);
    f[kRatioColumn] = ratio_text(latency, cell);
    f[kLostColumn] = lost_text(cell);
    f[kProbesColumn] = run.captured ? std::to_string(count_probes(cell)) : std::string(kDash);
    f[kVerdictColumn] = verdict_field(cell, kinds, footnotes);
    return row;
}

// One row per cell, grouped by fault in the order the run names the faults.
std::vector<TableRow> table_rows(const LabRun& run, std::vector<std::string>& footnotes) {
    std::vector<TableRow> rows;
    for (const Fault fault : faults_in_order(run)) {
        bool first_in_group = true;
        for (const CellResult& cell : run.cells) {
            if (cell.fault != fault) continue;
            rows.push_back(cell_row(run, cell, footnotes));
            rows.back().starts_group = first_in_group;
            first_in_group = false;
        }
    }
    return rows;
}

Fields titles() {
    Fields out;
    for (std::size_t i = 0; i < kColumns.size(); ++i) out[i] = std::string(kColumns[i].title);
    return out;
}

Widths column_widths(const std::vector<TableRow>& rows) {
    Widths widths{};
    for (std::size_t i = 0; i < kColumns.size(); ++i) widths[i] = display_width(kColumns[i].title);
    for (const TableRow& row : rows) {
        for (std::size_t i = 0; i < kColumns.size(); ++i) widths[i] = std::max(widths[i], display_width(row.fields[i]));
    }
    return widths;
}

// One padded line. `ok` is unset for the header; colour goes around the
// verdict's text only, after its width is counted, so it never shifts columns.
std::string table_line(const Fields& fields, const Widths& widths, bool color, std::optional<bool> ok) {
    std::string out;
    for (std::size_t i = 0; i < kColumns.size(); ++i) {
        if (i > 0) out += kColumnGap;
        const std::string pad = padding(fields[i], widths[i]);
        std::string text = fields[i];
        if (i == kVerdictColumn && color && ok) text = (*ok ? "\x1b[32m" : "\x1b[31m") + text + "\x1b[0m";
        out += kColumns[i].align == Align::right ? pad + text : text + pad;
    }
    return out + "\n";
}

std::string table_header(const LabRun& run) {
    std::string out = "lifeline lab: " + printable(config_text(run)) + "; kernel " +
                      (run.kernel.empty() ? std::string("unknown") : printable(run.kernel));
    if (!run.started_at.empty()) out += "; started " + printable(run.started_at);
    return out + "\n\n";
}

std::string table_footer(const LabRun& run) {
    std::string out =
        "latency: fault → first closing event; budget: what the fastest mechanism that "
        "should catch this fault promises; ratio: latency ÷ budget" +
        tolerance_text(run) +
        "; lost: application bytes handed over after the fault that never arrived (— no application data in the "
        "cell)\n";
    out += fmt::format("{} cells, {} as expected", run.cells.size(), count_as_expected(run));
    if (!run.captured) out += "; no wire evidence captured";
    if (run.elapsed > Duration::zero()) out += " (run took " + to_human(run.elapsed) + ")";
    return out + "\n";
}

// ---------------------------------------------------------------------------
// The wire summary.

// "server probes at +1.00s +2.00s (spacing 1.00s)", or empty without probes.
std::string probe_text(const CellResult& cell, Side side) {
    std::vector<Duration> at;
    for (const WirePacket& p : cell.wire) {
        if (p.kind == WireKind::keepalive_probe && p.from == side) at.push_back(p.at);
    }
    if (at.empty()) return {};
    std::sort(at.begin(), at.end());
    std::string text = fmt::format("{} probes at", to_string(side));
    for (std::size_t i = 0; i < at.size() && i < kMaxProbesListed; ++i) text += " " + format_offset(at[i]);
    if (at.size() > kMaxProbesListed) text += fmt::format(" … ({} more)", at.size() - kMaxProbesListed);
    if (at.size() >= 2) {
        const Duration spacing = (at.back() - at.front()) / static_cast<std::int64_t>(at.size() - 1);
        text += fmt::format(" (spacing {:.2f}s)", spacing.seconds_f());
    }
    return text;
}

// How the probing ended: ", then RST from client at +2.00s, server peer_reset
// at +2.01s", or ", not detected within 12s".
std::string ending_text(const LabRun& run, const CellResult& cell) {
    std::vector<std::string> endings;
    std::optional<WirePacket> first_rst;
    for (const WirePacket& p : cell.wire) {
        if (p.kind == WireKind::rst && p.at >= Duration::zero() && (!first_rst || p.at < first_rst->at)) first_rst = p;
    }
    if (first_rst)
        endings.push_back(fmt::format("RST from {} at {}", to_string(first_rst->from), format_offset(first_rst->at)));
    const std::vector<Detection> found = detections(cell);
    for (const Detection& d : found) {
        endings.push_back(
            fmt::format("{} {} at {}", to_string(d.side), reason_name(*d.outcome), format_offset(d.outcome->latency)));
    }
    if (found.empty()) {
        return ", " + (first_rst ? "then " + endings.front() + ", " : std::string()) + "not detected within " +
               lifeline::to_string(run.config.limit);
    }
    std::string text = ", then ";
    for (std::size_t i = 0; i < endings.size(); ++i) text += (i > 0 ? ", " : "") + endings[i];
    return text;
}

}  // namespace

std::string render_table(const LabRun& run, bool color) {
    std::vector<std::string> footnotes;
    const std::vector<TableRow> rows = table_rows(run, footnotes);
    const Widths widths = column_widths(rows);
    std::size_t total_width = kColumnGap.size() * (kColumns.size() - 1);
    for (const std::size_t w : widths) total_width += w;
    const std::string rule = repeat("─", total_width) + "\n";

    std::string out = table_header(run);
    out += table_line(titles(), widths, color, std::nullopt);
    out += rule;
    for (std::size_t r = 0; r < rows.size(); ++r) {
        if (rows[r].starts_group && r > 0) out += rule;
        out += table_line(rows[r].fields, widths, color, rows[r].ok);
    }
    out += "\n";
    for (std::size_t i = 0; i < footnotes.size(); ++i) out += fmt::format("[{}] {}\n", i + 1, footnotes[i]);
    if (!footnotes.empty()) out += "\n";
    return out + table_footer(run);
}

std::string render_wire_summary(const LabRun& run) {
    if (!run.captured) return {};
    std::vector<std::pair<std::string, std::string>> lines;  // (label, text)
    for (const CellResult& cell : run.cells) {
        if (!is_keepalive_mechanism(cell.mechanism)) continue;
        std::string text;
        for (const Side side : {Side::server, Side::client}) {
            const std::string probes = probe_text(cell, side);
            if (!probes.empty()) text += (text.empty() ? "" : "; ") + probes;
        }
        if (text.empty()) continue;
        lines.emplace_back(cell_name(cell) + ":", printable(text + ending_text(run, cell)));
    }

    std::size_t label_width = 0;
    for (const auto& [label_text, text] : lines) label_width = std::max(label_width, display_width(label_text));
    std::string out;
    for (const auto& [label_text, text] : lines)
        out += label_text + padding(label_text, label_width) + " " + text + "\n";
    return out;
}

}  // namespace lifeline::lab
