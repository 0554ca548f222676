#include "lab/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "net/sysctl.hpp"  // write_file_atomically

namespace lifeline::lab {

namespace {

constexpr std::string_view kDash = "—";
// Data and ACK ticks drawn per HTML timeline; the rest is thinned away so a
// full run (45 cells of a few hundred packets) stays small. Probes, RSTs, FINs
// and retransmissions are always drawn.
constexpr std::size_t kMaxBackgroundTicksPerCell = 50;
// Probe offsets listed per side in the wire summary before "… (N more)".
constexpr std::size_t kMaxProbesListed = 16;

// ---------------------------------------------------------------------------
// Facts derived from a cell, shared by every view.

struct Detection {
    Side side;
    const SideOutcome* outcome;
};

// The sides that detected, earliest first (the server first on a tie).
std::vector<Detection> detections(const CellResult& cell) {
    std::vector<Detection> out;
    if (cell.server.detected) out.push_back({Side::server, &cell.server});
    if (cell.client.detected) out.push_back({Side::client, &cell.client});
    if (out.size() == 2 && out[1].outcome->latency < out[0].outcome->latency) std::swap(out[0], out[1]);
    return out;
}

const SideOutcome& outcome_of(const CellResult& cell, Side side) {
    return side == Side::server ? cell.server : cell.client;
}

// Probes after the fault: the ones a healthy idle connection answers during
// the settle time say nothing about the fault.
std::size_t count_probes(const CellResult& cell) {
    return static_cast<std::size_t>(std::count_if(cell.wire.begin(), cell.wire.end(), [](const WirePacket& p) {
        return p.kind == WireKind::keepalive_probe && p.at > Duration::zero();
    }));
}

bool is_keepalive_mechanism(Mechanism mechanism) {
    return mechanism == Mechanism::keepalive || mechanism == Mechanism::keepalive_user_timeout ||
           mechanism == Mechanism::all;
}

std::string reason_name(const SideOutcome& outcome) {
    return outcome.reason ? std::string(lifeline::to_string(*outcome.reason)) : std::string("?");
}

// "server", "client", or both with the earlier one first ("client+server").
std::string detected_by(const std::vector<Detection>& found) {
    if (found.empty()) return std::string(kDash);
    std::string out(to_string(found[0].side));
    if (found.size() > 1) out += "+" + std::string(to_string(found[1].side));
    return out;
}

std::string cell_name(const CellResult& cell) {
    return std::string(to_string(cell.fault)) + "/" + std::string(to_string(cell.mechanism));
}

// The kinds of "not as expected", as the table names them.
enum class Verdict : unsigned char { missed, wrong_reason, late, unexpected };

std::string_view label(Verdict verdict) {
    switch (verdict) {
        case Verdict::missed:
            return "MISSED";
        case Verdict::wrong_reason:
            return "WRONG REASON";
        case Verdict::late:
            return "LATE";
        case Verdict::unexpected:
            return "UNEXPECTED";
    }
    return "UNEXPECTED";
}

// Where `phrase` first occurs in `text` not glued to other letters (so "late"
// does not match "latency"), or npos.
std::size_t find_phrase(std::string_view text, std::string_view phrase) {
    auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    for (std::size_t at = text.find(phrase); at != std::string_view::npos; at = text.find(phrase, at + 1)) {
        const bool starts = at == 0 || !is_letter(text[at - 1]);
        const std::size_t end = at + phrase.size();
        const bool ends = end == text.size() || !is_letter(text[end]);
        if (starts && ends) return at;
    }
    return std::string_view::npos;
}

struct Phrase {
    std::string_view text;
    Verdict verdict;
};

// The kind of the phrase that occurs first in `text`.
std::optional<Verdict> earliest(std::string_view text, std::span<const Phrase> phrases) {
    std::optional<Verdict> found;
    std::size_t found_at = std::string_view::npos;
    for (const Phrase& phrase : phrases) {
        const std::size_t at = find_phrase(text, phrase.text);
        if (at < found_at) {
            found_at = at;
            found = phrase.verdict;
        }
    }
    return found;
}

// The lab's judge (lab/expectations.cpp) starts each finding with its kind in
// capitals: "server: LATE, 1500 ms > budget 1000 ms + 100 ms". Findings worded
// otherwise are read by their words. Either way the kind named first wins,
// because the rest of a finding explains it: "UNEXPECTED peer_closed after
// 3 ms (expected no detection ...)" is not a miss. Unrecognised: nullopt.
std::optional<Verdict> classify_finding(std::string_view finding) {
    static constexpr std::array kLabels = {
        Phrase{"MISSED", Verdict::missed},
        Phrase{"WRONG REASON", Verdict::wrong_reason},
        Phrase{"LATE", Verdict::late},
        Phrase{"UNEXPECTED", Verdict::unexpected},
    };
    static constexpr std::array kWords = {
        Phrase{"missed", Verdict::missed},
        Phrase{"not detected", Verdict::missed},
        Phrase{"undetected", Verdict::missed},
        Phrase{"wrong reason", Verdict::wrong_reason},
        Phrase{"reason", Verdict::wrong_reason},
        Phrase{"late", Verdict::late},
        Phrase{"later", Verdict::late},
        Phrase{"too slow", Verdict::late},
        Phrase{"exceeded", Verdict::late},
        Phrase{"over budget", Verdict::late},
        Phrase{"unexpected", Verdict::unexpected},
        Phrase{"spurious", Verdict::unexpected},
        Phrase{"should not", Verdict::unexpected},
        Phrase{"before the fault", Verdict::unexpected},
    };
    if (const std::optional<Verdict> v = earliest(finding, kLabels)) return v;
    std::string lower(finding);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return earliest(lower, kWords);
}

// What went wrong when the findings do not say it in words we recognise.
Verdict structural_verdict(const CellResult& cell) {
    const std::vector<Detection> found = detections(cell);
    if (cell.budget && found.empty()) return Verdict::missed;
    if (cell.budget && !found.empty() && found.front().outcome->latency > *cell.budget + cell.tolerance)
        return Verdict::late;
    return Verdict::unexpected;
}

// Empty when the cell is as expected; otherwise the distinct kinds of trouble
// in the order the findings name them.
std::vector<Verdict> verdicts(const CellResult& cell) {
    std::vector<Verdict> out;
    if (cell.as_expected) return out;
    for (const std::string& finding : cell.findings) {
        const std::optional<Verdict> v = classify_finding(finding);
        if (v && std::find(out.begin(), out.end(), *v) == out.end()) out.push_back(*v);
    }
    if (out.empty()) out.push_back(structural_verdict(cell));
    return out;
}

// "ok", or "LATE" / "LATE, WRONG REASON".
std::string verdict_text(const std::vector<Verdict>& kinds) {
    if (kinds.empty()) return "ok";
    std::string out;
    for (Verdict v : kinds) {
        if (!out.empty()) out += ", ";
        out += label(v);
    }
    return out;
}

std::int64_t rounded_ms(Duration d) { return static_cast<std::int64_t>(std::llround(d.ms_f())); }

// "1012 ms".
std::string format_ms(Duration d) { return fmt::format("{} ms", rounded_ms(d)); }

// "+100 ms", "+1 s", "+1.5 s".
std::string format_tolerance(Duration d) {
    if (d < Duration::seconds(1)) return fmt::format("+{} ms", rounded_ms(d));
    return fmt::format("+{:g} s", d.seconds_f());
}

// "+0.21s", "-1.50s": an instant relative to the fault.
std::string format_offset(Duration d) { return fmt::format("{:+.2f}s", d.seconds_f()); }

std::string config_text(const LabRun& run) {
    const LabConfig& c = run.config;
    return fmt::format("keepalive {}/{}×{}, user timeout {}, heartbeat {}/{}, settle {}, limit {}",
                       lifeline::to_string(c.keepalive_idle), lifeline::to_string(c.keepalive_interval),
                       c.keepalive_count, lifeline::to_string(c.user_timeout),
                       lifeline::to_string(c.heartbeat_interval), lifeline::to_string(c.heartbeat_timeout),
                       lifeline::to_string(c.settle), lifeline::to_string(c.limit));
}

std::size_t count_as_expected(const LabRun& run) {
    return static_cast<std::size_t>(
        std::count_if(run.cells.begin(), run.cells.end(), [](const CellResult& c) { return c.as_expected; }));
}

template <class T, class Key>
std::vector<T> distinct_in_order(const LabRun& run, Key key) {
    std::vector<T> out;
    for (const CellResult& cell : run.cells) {
        const T value = key(cell);
        if (std::find(out.begin(), out.end(), value) == out.end()) out.push_back(value);
    }
    return out;
}

std::vector<Fault> faults_in_order(const LabRun& run) {
    return distinct_in_order<Fault>(run, [](const CellResult& c) { return c.fault; });
}

std::vector<Mechanism> mechanisms_in_order(const LabRun& run) {
    return distinct_in_order<Mechanism>(run, [](const CellResult& c) { return c.mechanism; });
}

// The terminal must not interpret anything the run carries (escape sequences
// in a message, newlines in a finding).
std::string printable(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) c = ' ';
    }
    return out;
}

// ---------------------------------------------------------------------------
// The terminal table.

enum class Align : unsigned char { left, right };

struct Column {
    std::string_view title;
    Align align;
};

constexpr std::array kColumns = {
    Column{"fault", Align::left},   Column{"mechanism", Align::left}, Column{"detected", Align::left},
    Column{"by", Align::left},      Column{"reason", Align::left},    Column{"latency", Align::right},
    Column{"budget", Align::right}, Column{"ratio", Align::right},    Column{"probes", Align::right},
    Column{"verdict", Align::left},
};
constexpr std::size_t kVerdictColumn = kColumns.size() - 1;
constexpr std::string_view kColumnGap = "  ";

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

struct TableRow {
    std::array<std::string, kColumns.size()> fields;
    bool ok = true;
    bool starts_group = false;
};

std::string repeat(std::string_view piece, std::size_t count) {
    std::string out;
    out.reserve(piece.size() * count);
    for (std::size_t i = 0; i < count; ++i) out += piece;
    return out;
}

// The legend's tolerance part, read from the cells rather than assumed.
std::string tolerance_text(const LabRun& run) {
    std::optional<Duration> heartbeat;
    std::optional<Duration> kernel;
    std::optional<Duration> any;
    for (const CellResult& cell : run.cells) {
        if (!cell.budget) continue;
        auto widen = [&](std::optional<Duration>& slot) {
            if (!slot || *slot < cell.tolerance) slot = cell.tolerance;
        };
        widen(any);
        if (cell.mechanism == Mechanism::heartbeat) widen(heartbeat);
        if (cell.mechanism == Mechanism::keepalive || cell.mechanism == Mechanism::keepalive_user_timeout)
            widen(kernel);
    }
    if (!any) return {};
    if (!heartbeat && !kernel) return "; tolerance up to " + format_tolerance(*any);
    std::string out = "; tolerance ";
    if (heartbeat) out += format_tolerance(*heartbeat) + " heartbeats";
    if (heartbeat && kernel) out += ", ";
    if (kernel) out += format_tolerance(*kernel) + " kernel";
    return out;
}

}  // namespace

std::string render_table(const LabRun& run, bool color) {
    std::vector<TableRow> rows;
    std::vector<std::string> footnotes;
    for (const Fault fault : faults_in_order(run)) {
        bool first_in_group = true;
        for (const CellResult& cell : run.cells) {
            if (cell.fault != fault) continue;
            const std::vector<Detection> found = detections(cell);
            const std::vector<Verdict> kinds = verdicts(cell);
            TableRow row;
            row.starts_group = first_in_group;
            first_in_group = false;
            row.ok = kinds.empty();
            const std::optional<Duration> latency =
                found.empty() ? std::nullopt : std::optional<Duration>(found.front().outcome->latency);
            row.fields[0] = std::string(to_string(cell.fault));
            row.fields[1] = std::string(to_string(cell.mechanism));
            row.fields[2] = found.empty() ? "no" : "yes";
            row.fields[3] = detected_by(found);
            row.fields[4] = found.empty() ? std::string(kDash) : reason_name(*found.front().outcome);
            row.fields[5] = latency ? format_ms(*latency) : std::string(kDash);
            row.fields[6] = cell.budget ? format_ms(*cell.budget) : std::string(kDash);
            row.fields[7] = latency && cell.budget && *cell.budget > Duration::zero()
                                ? fmt::format("{:.2f}", latency->seconds_f() / cell.budget->seconds_f())
                                : std::string(kDash);
            row.fields[8] = run.captured ? std::to_string(count_probes(cell)) : std::string(kDash);
            if (row.ok) {
                row.fields[kVerdictColumn] = "ok";
            } else {
                std::string refs;
                for (const std::string& finding : cell.findings) {
                    footnotes.push_back(cell_name(cell) + ": " + printable(finding));
                    refs += (refs.empty() ? "" : ",") + std::to_string(footnotes.size());
                }
                row.fields[kVerdictColumn] = "✗ " + verdict_text(kinds) + (refs.empty() ? "" : " [" + refs + "]");
            }
            rows.push_back(std::move(row));
        }
    }

    std::array<std::size_t, kColumns.size()> widths{};
    for (std::size_t i = 0; i < kColumns.size(); ++i) widths[i] = display_width(kColumns[i].title);
    for (const TableRow& row : rows) {
        for (std::size_t i = 0; i < kColumns.size(); ++i) widths[i] = std::max(widths[i], display_width(row.fields[i]));
    }
    std::size_t total_width = kColumnGap.size() * (kColumns.size() - 1);
    for (const std::size_t w : widths) total_width += w;
    const std::string rule = repeat("─", total_width);

    // Colour goes around the verdict's text only, after its width is counted.
    auto line = [&](const std::array<std::string, kColumns.size()>& fields, std::optional<bool> ok) {
        std::string out;
        for (std::size_t i = 0; i < kColumns.size(); ++i) {
            if (i > 0) out += kColumnGap;
            const std::string pad = padding(fields[i], widths[i]);
            std::string text = fields[i];
            if (i == kVerdictColumn && color && ok) text = (*ok ? "\x1b[32m" : "\x1b[31m") + text + "\x1b[0m";
            out += kColumns[i].align == Align::right ? pad + text : text + pad;
        }
        return out + "\n";
    };

    std::string out = "lifeline lab: " + printable(config_text(run)) + "; kernel " +
                      (run.kernel.empty() ? std::string("unknown") : printable(run.kernel));
    if (!run.started_at.empty()) out += "; started " + printable(run.started_at);
    out += "\n\n";

    std::array<std::string, kColumns.size()> titles;
    for (std::size_t i = 0; i < kColumns.size(); ++i) titles[i] = std::string(kColumns[i].title);
    out += line(titles, std::nullopt);
    out += rule + "\n";
    for (std::size_t r = 0; r < rows.size(); ++r) {
        if (rows[r].starts_group && r > 0) out += rule + "\n";
        out += line(rows[r].fields, rows[r].ok);
    }
    out += "\n";

    for (std::size_t i = 0; i < footnotes.size(); ++i) out += fmt::format("[{}] {}\n", i + 1, footnotes[i]);
    if (!footnotes.empty()) out += "\n";

    out +=
        "latency: fault → first closing event; budget: what the fastest mechanism that "
        "should catch this fault promises; ratio: latency ÷ budget" +
        tolerance_text(run) + "\n";
    out += fmt::format("{} cells, {} as expected", run.cells.size(), count_as_expected(run));
    if (!run.captured) out += "; no wire evidence captured";
    if (run.elapsed > Duration::zero()) out += " (run took " + to_human(run.elapsed) + ")";
    out += "\n";
    return out;
}

// ---------------------------------------------------------------------------
// The wire summary.

std::string render_wire_summary(const LabRun& run) {
    if (!run.captured) return {};
    std::vector<std::pair<std::string, std::string>> lines;  // (label, text)
    for (const CellResult& cell : run.cells) {
        if (!is_keepalive_mechanism(cell.mechanism)) continue;
        std::string text;
        for (const Side side : {Side::server, Side::client}) {
            std::vector<Duration> at;
            for (const WirePacket& p : cell.wire) {
                if (p.kind == WireKind::keepalive_probe && p.from == side) at.push_back(p.at);
            }
            if (at.empty()) continue;
            std::sort(at.begin(), at.end());
            if (!text.empty()) text += "; ";
            text += fmt::format("{} probes at", to_string(side));
            for (std::size_t i = 0; i < at.size() && i < kMaxProbesListed; ++i) text += " " + format_offset(at[i]);
            if (at.size() > kMaxProbesListed) text += fmt::format(" … ({} more)", at.size() - kMaxProbesListed);
            if (at.size() >= 2) {
                const Duration spacing = (at.back() - at.front()) / static_cast<std::int64_t>(at.size() - 1);
                text += fmt::format(" (spacing {:.2f}s)", spacing.seconds_f());
            }
        }
        if (text.empty()) continue;

        std::vector<std::string> endings;
        std::optional<WirePacket> first_rst;
        for (const WirePacket& p : cell.wire) {
            if (p.kind == WireKind::rst && p.at >= Duration::zero() && (!first_rst || p.at < first_rst->at))
                first_rst = p;
        }
        if (first_rst)
            endings.push_back(
                fmt::format("RST from {} at {}", to_string(first_rst->from), format_offset(first_rst->at)));
        const std::vector<Detection> found = detections(cell);
        for (const Detection& d : found) {
            endings.push_back(fmt::format("{} {} at {}", to_string(d.side), reason_name(*d.outcome),
                                          format_offset(d.outcome->latency)));
        }
        if (found.empty()) {
            text += ", " + (first_rst ? "then " + endings.front() + ", " : std::string()) + "not detected within " +
                    lifeline::to_string(run.config.limit);
        } else {
            text += ", then ";
            for (std::size_t i = 0; i < endings.size(); ++i) text += (i > 0 ? ", " : "") + endings[i];
        }
        lines.emplace_back(cell_name(cell) + ":", printable(text));
    }

    std::size_t label_width = 0;
    for (const auto& [label_text, text] : lines) label_width = std::max(label_width, display_width(label_text));
    std::string out;
    for (const auto& [label_text, text] : lines)
        out += label_text + padding(label_text, label_width) + " " + text + "\n";
    return out;
}

// ---------------------------------------------------------------------------
// JSON.

namespace {

// Milliseconds, as an integer when whole; infinite durations are null.
nlohmann::json ms_json(Duration d) {
    if (d.is_infinite()) return nullptr;
    if (d.ns() % 1'000'000 == 0) return d.ms();
    return static_cast<double>(d.us()) / 1000.0;
}

nlohmann::json side_json(const SideOutcome& outcome) {
    nlohmann::json j = nlohmann::json::object();
    j["detected"] = outcome.detected;
    j["reason"] = outcome.reason ? nlohmann::json(std::string(lifeline::to_string(*outcome.reason))) : nullptr;
    j["latency_ms"] = outcome.detected ? ms_json(outcome.latency) : nullptr;
    j["message"] = outcome.message;
    return j;
}

nlohmann::json cell_json(const CellResult& cell, bool captured) {
    nlohmann::json j = nlohmann::json::object();
    j["fault"] = std::string(to_string(cell.fault));
    j["mechanism"] = std::string(to_string(cell.mechanism));
    j["server"] = side_json(cell.server);
    j["client"] = side_json(cell.client);
    nlohmann::json by = nlohmann::json::array();
    for (const Detection& d : detections(cell)) by.push_back(std::string(to_string(d.side)));
    j["detected_by"] = std::move(by);
    j["budget_ms"] = cell.budget ? ms_json(*cell.budget) : nullptr;
    j["tolerance_ms"] = ms_json(cell.tolerance);
    j["last_byte_from_client_ms"] = cell.last_byte_from_client ? ms_json(*cell.last_byte_from_client) : nullptr;
    j["probes"] = captured ? nlohmann::json(count_probes(cell)) : nullptr;
    nlohmann::json wire = nlohmann::json::array();
    for (const WirePacket& p : cell.wire) {
        nlohmann::json packet = nlohmann::json::object();
        packet["at_ms"] = ms_json(p.at);
        packet["from"] = std::string(to_string(p.from));
        packet["kind"] = std::string(to_string(p.kind));
        packet["bytes"] = p.payload_bytes;
        wire.push_back(std::move(packet));
    }
    j["wire"] = std::move(wire);
    j["findings"] = cell.findings;
    j["as_expected"] = cell.as_expected;
    j["verdict"] = verdict_text(verdicts(cell));
    return j;
}

}  // namespace

nlohmann::json to_json(const LabRun& run) {
    const LabConfig& c = run.config;
    nlohmann::json config = nlohmann::json::object();
    config["keepalive_idle_ms"] = ms_json(c.keepalive_idle);
    config["keepalive_interval_ms"] = ms_json(c.keepalive_interval);
    config["keepalive_count"] = c.keepalive_count;
    config["user_timeout_ms"] = ms_json(c.user_timeout);
    config["heartbeat_interval_ms"] = ms_json(c.heartbeat_interval);
    config["heartbeat_timeout_ms"] = ms_json(c.heartbeat_timeout);
    config["limit_ms"] = ms_json(c.limit);
    config["settle_ms"] = ms_json(c.settle);

    nlohmann::json j = nlohmann::json::object();
    j["config"] = std::move(config);
    j["kernel"] = run.kernel;
    j["started_at"] = run.started_at;
    j["elapsed_ms"] = ms_json(run.elapsed);
    j["captured"] = run.captured;
    nlohmann::json summary = nlohmann::json::object();
    summary["cells"] = run.cells.size();
    summary["as_expected"] = count_as_expected(run);
    j["summary"] = std::move(summary);
    nlohmann::json cells = nlohmann::json::array();
    for (const CellResult& cell : run.cells) cells.push_back(cell_json(cell, run.captured));
    j["cells"] = std::move(cells);
    return j;
}

// ---------------------------------------------------------------------------
// HTML.

namespace {

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

// A fragment id made of letters, digits, '-' and '_' only.
std::string anchor(const CellResult& cell) {
    std::string out = "cell-" + cell_name(cell);
    for (char& c : out) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!keep) c = '_';
    }
    return out;
}

std::string_view short_reason(DisconnectReason reason) {
    switch (reason) {
        case DisconnectReason::peer_closed:
            return "closed";
        case DisconnectReason::peer_reset:
            return "reset";
        case DisconnectReason::keepalive_timeout:
            return "keepalive";
        case DisconnectReason::user_timeout:
            return "user timeout";
        case DisconnectReason::heartbeat_timeout:
            return "heartbeat";
        case DisconnectReason::idle_timeout:
            return "idle";
        case DisconnectReason::unreachable:
            return "unreachable";
        case DisconnectReason::protocol_error:
            return "protocol";
        case DisconnectReason::slow_consumer:
            return "slow consumer";
        case DisconnectReason::session_replaced:
            return "replaced";
        case DisconnectReason::local_close:
            return "local close";
        case DisconnectReason::shutdown:
            return "shutdown";
    }
    return "?";
}

// "ok" (green), "quiet" (grey: nothing detected, as expected) or "bad" (red).
std::string_view cell_class(const CellResult& cell) {
    if (!cell.as_expected) return "bad";
    return detections(cell).empty() ? "quiet" : "ok";
}

constexpr std::string_view kStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;padding:0 16px;color:#212529}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 2px;border-bottom:1px solid #dee2e6}
h3{font-size:14px;margin:14px 0 2px}.meta,.desc,.facts{color:#495057;margin:2px 0}
table.matrix{border-collapse:separate;border-spacing:3px;margin:12px 0}
.matrix th{font-weight:600;padding:4px 8px;text-align:left}.matrix thead th{text-align:center}
.matrix td{padding:6px 10px;text-align:center;border-radius:4px;min-width:110px;font-size:13px}
.matrix td a{color:inherit;text-decoration:none;display:block}.matrix td b{font-size:14px}
.ok{background:#b2f2bb}.quiet{background:#e9ecef;color:#495057}.bad{background:#ffa8a8}.absent{background:#f8f9fa}
.badge{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px;margin-right:6px}
.legend{color:#495057;font-size:13px;margin:6px 0}.legend span{margin-right:14px;white-space:nowrap}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:4px}
.findings{color:#c92a2a;margin:2px 0 4px;padding-left:22px}
svg{display:block;max-width:100%;height:auto;margin:2px 0 10px;font-size:11px}
svg text{fill:#495057}svg .fault-label{fill:#c92a2a;font-weight:600}svg .miss{fill:#868e96;font-style:italic}
.axis{stroke:#495057}.grid{stroke:#f1f3f5}.fault{stroke:#c92a2a;stroke-width:1.5}
.budget{fill:#2f9e44;fill-opacity:.16}.tolerance{fill:#2f9e44;fill-opacity:.07}
.lastbyte{fill:#1c7ed6}.lastbyte-line{stroke:#1c7ed6;stroke-dasharray:2 2}
.t-probe{stroke:#7048e8;stroke-width:1.5}.t-end{stroke:#e8590c;stroke-width:2}
.t-trouble{stroke:#1971c2;stroke-width:1.5}.t-data{stroke:#adb5bd;stroke-width:1}
.d-ok{fill:#2f9e44}.d-bad{fill:#e03131}
.c-probe{color:#7048e8}.c-end{color:#e8590c}.c-trouble{color:#1971c2}.c-data{color:#adb5bd}.c-last{color:#1c7ed6}.c-ok{color:#2f9e44}
)";

// Where a packet's tick is drawn and how.
enum class TickClass : unsigned char { probe, end, trouble, data };

TickClass tick_class(WireKind kind) {
    switch (kind) {
        case WireKind::keepalive_probe:
            return TickClass::probe;
        case WireKind::fin:
        case WireKind::rst:
            return TickClass::end;
        case WireKind::retransmission:
        case WireKind::window_probe:
        case WireKind::zero_window:
            return TickClass::trouble;
        case WireKind::data:
        case WireKind::ack:
            return TickClass::data;
    }
    return TickClass::data;
}

constexpr std::array<std::string_view, 4> kTickCss = {"t-probe", "t-end", "t-trouble", "t-data"};
constexpr std::array<double, 4> kTickLength = {14, 18, 12, 7};

// The geometry of one timeline, in SVG user units.
struct Timeline {
    static constexpr double kWidth = 960;
    static constexpr double kHeight = 170;
    static constexpr double kLeft = 64;
    static constexpr double kRight = 940;
    static constexpr double kTop = 24;
    static constexpr double kBottom = 146;
    static constexpr double kAxis = 85;
    static constexpr double kDiamondOffset = 38;

    Duration from;
    Duration to;

    bool contains(Duration t) const { return t >= from && t <= to; }
    // Instants outside the window are pinned to its edges.
    double x(Duration t) const {
        const Duration clamped = std::clamp(t, from, to);
        return kLeft + (clamped - from).seconds_f() / (to - from).seconds_f() * (kRight - kLeft);
    }
};

void append_ticks(std::string& svg, const Timeline& tl, std::int64_t span_s) {
    constexpr std::array<std::int64_t, 12> kSteps = {1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600};
    std::int64_t step = kSteps.back();
    for (const std::int64_t s : kSteps) {
        if (span_s / s <= 30) {
            step = s;
            break;
        }
    }
    const double first = std::ceil(tl.from.seconds_f() / static_cast<double>(step)) * static_cast<double>(step);
    std::string grid;
    std::string labels;
    for (auto s = static_cast<std::int64_t>(first); Duration::seconds(s) <= tl.to; s += step) {
        const double x = tl.x(Duration::seconds(s));
        fmt::format_to(std::back_inserter(grid), "M{:.1f} {}V{}", x, Timeline::kTop, Timeline::kBottom);
        fmt::format_to(std::back_inserter(labels), R"(<path class="axis" d="M{:.1f} {}v6"/>)", x, Timeline::kAxis - 3);
        fmt::format_to(std::back_inserter(labels), R"(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)", x,
                       Timeline::kHeight - 8, s == 0 ? std::string("0") : fmt::format("{:+}s", s));
    }
    svg += R"(<path class="grid" d=")" + grid + R"("/>)";
    svg += labels;
}

void append_wire(std::string& svg, const Timeline& tl, const CellResult& cell) {
    std::array<std::vector<const WirePacket*>, 2> background;  // Data and ACKs, by sender.
    std::array<std::string, 4> server_paths;
    std::array<std::string, 4> client_paths;
    auto draw = [&](const WirePacket& p) {
        const auto cls = static_cast<std::size_t>(tick_class(p.kind));
        const double length = kTickLength[cls];
        std::string& path = p.from == Side::server ? server_paths[cls] : client_paths[cls];
        fmt::format_to(std::back_inserter(path), "M{:.1f} {}v{}", tl.x(p.at), Timeline::kAxis,
                       p.from == Side::server ? -length : length);
    };
    for (const WirePacket& p : cell.wire) {
        if (!tl.contains(p.at)) continue;
        if (tick_class(p.kind) == TickClass::data) {
            background[p.from == Side::server ? 0 : 1].push_back(&p);
        } else {
            draw(p);
        }
    }
    // Thin data and ACKs to at most kMaxBackgroundTicksPerCell, evenly over
    // each sender's packets. Thinning per sender keeps both visible: one stride
    // over an interleaved data/ACK stream could keep only one side's packets.
    const std::size_t server_n = background[0].size();
    const std::size_t client_n = background[1].size();
    const std::size_t half = kMaxBackgroundTicksPerCell / 2;
    const std::size_t server_keep =
        std::min(server_n, std::max(half, kMaxBackgroundTicksPerCell - std::min(client_n, half)));
    const std::size_t client_keep = std::min(client_n, kMaxBackgroundTicksPerCell - server_keep);
    for (std::size_t k = 0; k < server_keep; ++k) draw(*background[0][k * server_n / server_keep]);
    for (std::size_t k = 0; k < client_keep; ++k) draw(*background[1][k * client_n / client_keep]);
    const std::size_t n = server_n + client_n;
    const std::size_t keep = server_keep + client_keep;
    assert(keep <= kMaxBackgroundTicksPerCell);

    // Background first, so probes and RSTs are drawn on top.
    for (const std::size_t cls : std::array<std::size_t, 4>{3, 2, 0, 1}) {
        for (const std::string* path : {&server_paths[cls], &client_paths[cls]}) {
            if (!path->empty()) svg += fmt::format(R"(<path class="{}" d="{}"/>)", kTickCss[cls], *path);
        }
    }
    if (n > keep) {
        svg += fmt::format(R"(<text x="{}" y="{}" text-anchor="end">data/ack ticks: {} of {} shown</text>)",
                           Timeline::kRight, Timeline::kTop - 8, keep, n);
    }
}

std::string render_timeline(const LabRun& run, const CellResult& cell) {
    Timeline tl{Duration::zero() - run.config.settle, run.config.limit};
    if (tl.to - tl.from < Duration::seconds(1)) tl.to = tl.from + Duration::seconds(1);
    const std::int64_t span_s = (tl.to - tl.from).ms() / 1000 + 1;

    std::string svg = fmt::format(R"(<svg viewBox="0 0 {0} {1}" width="{0}" height="{1}" role="img">)",
                                  Timeline::kWidth, Timeline::kHeight);
    svg += "<title>" + html_escape(cell_name(cell)) + ": time relative to the fault, in seconds</title>";

    // The promise: the budget, then the tolerance beyond it.
    if (cell.budget) {
        const double x0 = tl.x(Duration::zero());
        const double x1 = tl.x(*cell.budget);
        const double x2 = tl.x(*cell.budget + cell.tolerance);
        const double h = Timeline::kBottom - Timeline::kTop;
        svg += fmt::format(
            R"(<rect class="budget" x="{:.1f}" y="{}" width="{:.1f}" height="{}"><title>budget {}</title></rect>)", x0,
            Timeline::kTop, x1 - x0, h, html_escape(format_ms(*cell.budget)));
        svg += fmt::format(
            R"(<rect class="tolerance" x="{:.1f}" y="{}" width="{:.1f}" height="{}"><title>tolerance {}</title></rect>)",
            x1, Timeline::kTop, x2 - x1, h, html_escape(format_tolerance(cell.tolerance)));
    }
    append_ticks(svg, tl, span_s);
    if (cell.budget) {
        svg += fmt::format(R"(<text x="{:.1f}" y="{}">budget {}</text>)", tl.x(Duration::zero()) + 4,
                           Timeline::kBottom - 4, html_escape(format_ms(*cell.budget)));
    }
    svg += fmt::format(R"(<path class="axis" d="M{} {}H{}"/>)", Timeline::kLeft, Timeline::kAxis, Timeline::kRight);
    svg += fmt::format(R"(<text x="6" y="{}">server</text><text x="6" y="{}">client</text>)", Timeline::kAxis - 8,
                       Timeline::kAxis + 16);

    append_wire(svg, tl, cell);

    // The fault, and the last byte the server had from the client before it.
    const double fault_x = tl.x(Duration::zero());
    svg += fmt::format(R"(<path class="fault" d="M{:.1f} {}V{}"/>)", fault_x, Timeline::kTop - 4, Timeline::kBottom);
    svg += fmt::format(R"(<text class="fault-label" x="{:.1f}" y="{}">{}</text>)", fault_x + 4, Timeline::kTop - 8,
                       html_escape(to_string(cell.fault)));
    if (cell.last_byte_from_client) {
        const double last_x = tl.x(*cell.last_byte_from_client);
        svg +=
            fmt::format(R"(<path class="lastbyte-line" d="M{:.1f} {}V{}"/>)", last_x, Timeline::kTop, Timeline::kAxis);
        svg += fmt::format(
            R"(<circle class="lastbyte" cx="{:.1f}" cy="{}" r="3.5"><title>last byte from the client at {}</title></circle>)",
            last_x, Timeline::kAxis, html_escape(format_offset(*cell.last_byte_from_client)));
        svg += fmt::format(R"(<text x="{:.1f}" y="{}" text-anchor="end">last byte</text>)", last_x - 4,
                           Timeline::kTop - 8);
    }

    // Each side's detection: the server above the axis, the client below.
    const std::string_view diamond_class = cell.as_expected ? "d-ok" : "d-bad";
    bool any_detected = false;
    for (const Side side : {Side::server, Side::client}) {
        const SideOutcome& o = outcome_of(cell, side);
        if (!o.detected) continue;
        any_detected = true;
        const double x = tl.x(o.latency);
        const double y =
            Timeline::kAxis + (side == Side::server ? -Timeline::kDiamondOffset : Timeline::kDiamondOffset);
        std::string tooltip = fmt::format("{}: {} after {}", to_string(side), reason_name(o), format_ms(o.latency));
        if (!o.message.empty()) tooltip += " — " + o.message;
        svg += fmt::format(
            R"(<polygon class="{}" points="{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}"><title>{}</title></polygon>)",
            diamond_class, x, y - 7, x + 7, y, x, y + 7, x - 7, y, html_escape(tooltip));
        const bool flip = x > Timeline::kLeft + 0.7 * (Timeline::kRight - Timeline::kLeft);
        svg +=
            fmt::format(R"(<text x="{:.1f}" y="{:.1f}" text-anchor="{}">{} {}</text>)", flip ? x - 10 : x + 10, y + 4,
                        flip ? "end" : "start", html_escape(reason_name(o)), html_escape(format_ms(o.latency)));
    }
    if (!any_detected) {
        svg += fmt::format(R"(<text class="miss" x="{}" y="{}" text-anchor="end">not detected within {}</text>)",
                           Timeline::kRight - 4, Timeline::kAxis - Timeline::kDiamondOffset + 4,
                           html_escape(lifeline::to_string(run.config.limit)));
    }
    svg += "</svg>\n";
    return svg;
}

// One line of facts under a cell's heading.
std::string cell_facts(const LabRun& run, const CellResult& cell) {
    std::vector<std::string> facts;
    for (const Side side : {Side::server, Side::client}) {
        const SideOutcome& o = outcome_of(cell, side);
        facts.push_back(o.detected
                            ? fmt::format("{}: {} after {}", to_string(side), reason_name(o), format_ms(o.latency))
                            : fmt::format("{}: not detected", to_string(side)));
    }
    facts.push_back(cell.budget
                        ? fmt::format("budget {} ({})", format_ms(*cell.budget), format_tolerance(cell.tolerance))
                        : std::string("no budget"));
    if (run.captured) facts.push_back(fmt::format("{} keepalive probes", count_probes(cell)));
    facts.push_back(cell.last_byte_from_client
                        ? "last byte from the client at " + format_offset(*cell.last_byte_from_client)
                        : std::string("no payload from the client seen"));
    std::string out;
    for (const std::string& f : facts) out += (out.empty() ? "" : " · ") + html_escape(f);
    return out;
}

std::string matrix_cell(const CellResult& cell) {
    const std::vector<Detection> found = detections(cell);
    const std::vector<Verdict> kinds = verdicts(cell);
    std::string title;
    for (const std::string& finding : cell.findings) title += (title.empty() ? "" : "\n") + finding;
    std::string out =
        fmt::format(R"(<td class="{}"{}><a href="#{}">)", cell_class(cell),
                    title.empty() ? std::string() : R"( title=")" + html_escape(title) + "\"", anchor(cell));
    if (!kinds.empty()) out += "✗ " + html_escape(verdict_text(kinds)) + "<br>";
    if (found.empty()) {
        out += "not detected";
    } else {
        const SideOutcome& first = *found.front().outcome;
        const std::string reason = first.reason ? std::string(short_reason(*first.reason)) : std::string("?");
        out += "<b>" + html_escape(format_ms(first.latency)) + "</b><br>" + html_escape(reason) + " · " +
               html_escape(detected_by(found));
    }
    return out + "</a></td>";
}

}  // namespace

std::string render_html(const LabRun& run) {
    const std::vector<Fault> faults = faults_in_order(run);
    const std::vector<Mechanism> mechanisms = mechanisms_in_order(run);
    auto find_cell = [&](Fault f, Mechanism m) -> const CellResult* {
        for (const CellResult& cell : run.cells) {
            if (cell.fault == f && cell.mechanism == m) return &cell;
        }
        return nullptr;
    };

    std::string out;
    out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    out += "<title>lifeline lab" + (run.kernel.empty() ? std::string() : " — kernel " + html_escape(run.kernel)) +
           "</title>\n";
    out += "<style>" + std::string(kStyle) + "</style>\n</head>\n<body>\n";

    out += "<h1>lifeline lab: who notices a dead peer, how, and how fast</h1>\n";
    out += "<p class=\"meta\">" + html_escape(config_text(run)) + "</p>\n";
    std::string meta = "kernel " + (run.kernel.empty() ? std::string("unknown") : run.kernel);
    if (!run.started_at.empty()) meta += " · started " + run.started_at;
    if (run.elapsed > Duration::zero()) meta += " · took " + to_human(run.elapsed);
    meta += run.captured ? " · wire evidence captured" : " · no wire evidence captured";
    out += "<p class=\"meta\">" + html_escape(meta) + "</p>\n";
    out += fmt::format("<p><b>{} cells, {} as expected.</b></p>\n", run.cells.size(), count_as_expected(run));

    // The matrix.
    out += "<table class=\"matrix\">\n<thead><tr><th>fault</th>";
    for (const Mechanism m : mechanisms) out += "<th>" + html_escape(to_string(m)) + "</th>";
    out += "</tr></thead>\n<tbody>\n";
    for (const Fault f : faults) {
        out += "<tr><th title=\"" + html_escape(describe(f)) + "\">" + html_escape(to_string(f)) + "</th>";
        for (const Mechanism m : mechanisms) {
            const CellResult* cell = find_cell(f, m);
            out += cell ? matrix_cell(*cell) : "<td class=\"absent\"></td>";
        }
        out += "</tr>\n";
    }
    out += "</tbody>\n</table>\n";
    out +=
        "<p class=\"legend\">"
        "<span><i class=\"sw ok\"></i>detected as expected (first detection: latency, "
        "reason, side)</span>"
        "<span><i class=\"sw quiet\"></i>not detected, as expected</span>"
        "<span><i class=\"sw bad\"></i>not as expected</span></p>\n";
    out +=
        "<p class=\"legend\">latency: fault → first closing event; budget: what the fastest "
        "mechanism that should catch this fault promises" +
        html_escape(tolerance_text(run)) + "</p>\n";

    // The timelines.
    out += "<h2>Timelines</h2>\n";
    out +=
        "<p class=\"legend\">"
        "<span class=\"c-probe\">┃</span> keepalive probe "
        "<span class=\"c-end\">┃</span> RST / FIN "
        "<span class=\"c-trouble\">┃</span> retransmission, window probe, zero window "
        "<span class=\"c-data\">┃</span> data / ACK (thinned) · "
        "ticks above the axis are sent by the server, below by the client · "
        "<span class=\"c-last\">●</span> last byte the server received from the client · "
        "<span class=\"c-ok\">◆</span> detection (server above, client below; red when "
        "not as expected) · <i class=\"sw ok\"></i>budget, then tolerance</p>\n";
    for (const Fault f : faults) {
        out += "<h2>" + html_escape(to_string(f)) + "</h2>\n<p class=\"desc\">" + html_escape(describe(f)) + "</p>\n";
        for (const CellResult& cell : run.cells) {
            if (cell.fault != f) continue;
            const std::vector<Verdict> kinds = verdicts(cell);
            out += fmt::format(R"(<h3 id="{}"><span class="badge {}">{}</span>{} / {}</h3>)", anchor(cell),
                               cell_class(cell), html_escape(kinds.empty() ? "ok" : "✗ " + verdict_text(kinds)),
                               html_escape(to_string(cell.fault)), html_escape(to_string(cell.mechanism)));
            out += "\n<p class=\"facts\">" + cell_facts(run, cell) + "</p>\n";
            if (!cell.findings.empty()) {
                out += "<ol class=\"findings\">";
                for (const std::string& finding : cell.findings) out += "<li>" + html_escape(finding) + "</li>";
                out += "</ol>\n";
            }
            out += render_timeline(run, cell);
        }
    }
    out += "</body>\n</html>\n";
    return out;
}

// ---------------------------------------------------------------------------
// Files.

Result<void> write_report(const LabRun& run, const std::string& directory) {
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec) return system_error("create report directory " + directory, ec.value());
    const std::filesystem::path dir(directory);
    // Messages and findings come from other processes; invalid UTF-8 is
    // replaced rather than allowed to throw.
    const std::string json_text = to_json(run).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (Result<void> written = net::write_file_atomically((dir / "lab.json").string(), json_text); !written)
        return written.error().with_context("write lab report");
    if (Result<void> written = net::write_file_atomically((dir / "lab.html").string(), render_html(run)); !written)
        return written.error().with_context("write lab report");
    return {};
}

}  // namespace lifeline::lab
