#include "lab/report_facts.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <utility>

namespace lifeline::lab::report_detail {

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

static bool is_keepalive_side(Mechanism m) {
    return m == Mechanism::keepalive || m == Mechanism::keepalive_user_timeout || m == Mechanism::all;
}

bool is_keepalive_mechanism(Mechanism mechanism) {
    return is_keepalive_side(side_mechanism(mechanism, Side::server)) ||
           is_keepalive_side(side_mechanism(mechanism, Side::client));
}

std::string reason_name(const SideOutcome& outcome) {
    return outcome.reason ? std::string(lifeline::to_string(*outcome.reason)) : std::string("?");
}

std::string detected_by(const std::vector<Detection>& found) {
    if (found.empty()) return std::string(kDash);
    std::string out(to_string(found[0].side));
    if (found.size() > 1) out += "+" + std::string(to_string(found[1].side));
    return out;
}

std::string cell_name(const CellResult& cell) {
    return std::string(to_string(cell.fault)) + "/" + std::string(to_string(cell.mechanism));
}

namespace {

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

}  // namespace

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

std::string format_ms(Duration d) { return fmt::format("{} ms", rounded_ms(d)); }

std::string format_tolerance(Duration d) {
    if (d < Duration::seconds(1)) return fmt::format("+{} ms", rounded_ms(d));
    return fmt::format("+{:g} s", d.seconds_f());
}

std::string format_offset(Duration d) { return fmt::format("{:+.2f}s", d.seconds_f()); }

std::string format_bytes(std::uint64_t bytes) {
    static constexpr std::array<std::string_view, 7> kUnits = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes == 0) return "0";
    if (bytes < 1000) return fmt::format("{} B", bytes);
    // Promote while the rounded value would need a fourth digit. The double
    // is exact enough: three digits are all that is shown.
    auto value = static_cast<double>(bytes);
    std::size_t unit = 0;
    while (value >= 999.5 && unit + 1 < kUnits.size()) {
        value /= 1024.0;
        ++unit;
    }
    // One decimal below 10, none above: never more than three digits. A
    // decimal that rounds to ".0" is dropped: "1 KiB", not "1.0 KiB".
    if (value < 9.95) {
        std::string number = fmt::format("{:.1f}", value);
        if (number.size() > 2 && number.compare(number.size() - 2, 2, ".0") == 0) number.resize(number.size() - 2);
        return fmt::format("{} {}", number, kUnits[unit]);
    }
    return fmt::format("{:.0f} {}", value, kUnits[unit]);
}

std::string lost_text(const CellResult& cell) {
    return cell.lost_bytes ? format_bytes(*cell.lost_bytes) : std::string(kDash);
}

std::string config_text(const LabRun& run) {
    const LabConfig& c = run.config;
    std::string out =
        fmt::format("keepalive {}/{}×{}, user timeout {}, heartbeat {}/{}, settle {}, limit {}, nat timeout {}",
                    lifeline::to_string(c.keepalive_idle), lifeline::to_string(c.keepalive_interval), c.keepalive_count,
                    lifeline::to_string(c.user_timeout), lifeline::to_string(c.heartbeat_interval),
                    lifeline::to_string(c.heartbeat_timeout), lifeline::to_string(c.settle),
                    lifeline::to_string(c.limit), lifeline::to_string(c.nat_timeout));
    if (c.ipv6) out += " · IPv6";
    return out;
}

std::size_t count_as_expected(const LabRun& run) {
    return static_cast<std::size_t>(
        std::count_if(run.cells.begin(), run.cells.end(), [](const CellResult& c) { return c.as_expected; }));
}

namespace {

template <class T, class Key>
std::vector<T> distinct_in_order(const LabRun& run, Key key) {
    std::vector<T> out;
    for (const CellResult& cell : run.cells) {
        const T value = key(cell);
        if (std::find(out.begin(), out.end(), value) == out.end()) out.push_back(value);
    }
    return out;
}

}  // namespace

std::vector<Fault> faults_in_order(const LabRun& run) {
    return distinct_in_order<Fault>(run, [](const CellResult& c) { return c.fault; });
}

std::vector<Mechanism> mechanisms_in_order(const LabRun& run) {
    return distinct_in_order<Mechanism>(run, [](const CellResult& c) { return c.mechanism; });
}

std::string printable(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) c = ' ';
    }
    return out;
}

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
        if (cell.mechanism == Mechanism::heartbeat || cell.mechanism == Mechanism::websocket) widen(heartbeat);
        if (cell.mechanism == Mechanism::keepalive || cell.mechanism == Mechanism::keepalive_user_timeout ||
            cell.mechanism == Mechanism::run || cell.mechanism == Mechanism::protect)
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

}  // namespace lifeline::lab::report_detail
