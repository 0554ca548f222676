// The run as one self-contained HTML page (lab.html).
#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

#include "lab/report.hpp"
#include "lab/report_facts.hpp"
#include "lab/report_timeline.hpp"

namespace lifeline::lab {

using namespace report_detail;

namespace {

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
        case DisconnectReason::rejected:
            return "rejected";
        case DisconnectReason::gateway_lost:
            return "gateway lost";
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
    facts.push_back("lost: " + lost_text(cell) + (cell.lost_bytes ? "" : " (no application data)"));
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
    // Only a loss earns a line: "lost 0" in every cell would drown the ones that matter.
    if (cell.lost_bytes && *cell.lost_bytes > 0) out += "<br>lost " + html_escape(format_bytes(*cell.lost_bytes));
    return out + "</a></td>";
}

const CellResult* find_cell(const LabRun& run, Fault fault, Mechanism mechanism) {
    for (const CellResult& cell : run.cells) {
        if (cell.fault == fault && cell.mechanism == mechanism) return &cell;
    }
    return nullptr;
}

// From the doctype to the cell count under the page's heading.
std::string page_head(const LabRun& run) {
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
    return out;
}

// Faults down, mechanisms across, then the legends that explain the colours.
std::string matrix(const LabRun& run) {
    const std::vector<Mechanism> mechanisms = mechanisms_in_order(run);
    std::string out = "<table class=\"matrix\">\n<thead><tr><th>fault</th>";
    for (const Mechanism m : mechanisms) out += "<th>" + html_escape(to_string(m)) + "</th>";
    out += "</tr></thead>\n<tbody>\n";
    for (const Fault f : faults_in_order(run)) {
        out += "<tr><th title=\"" + html_escape(describe(f)) + "\">" + html_escape(to_string(f)) + "</th>";
        for (const Mechanism m : mechanisms) {
            const CellResult* cell = find_cell(run, f, m);
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
        html_escape(tolerance_text(run)) +
        "; lost: application bytes handed over after the fault that never arrived (shown when not zero)</p>\n";
    return out;
}

// A cell's heading, facts, findings and timeline.
std::string cell_section(const LabRun& run, const CellResult& cell) {
    const std::vector<Verdict> kinds = verdicts(cell);
    std::string out = fmt::format(R"(<h3 id="{}"><span class="badge {}">{}</span>{} / {}</h3>)", anchor(cell),
                                  cell_class(cell), html_escape(kinds.empty() ? "ok" : "✗ " + verdict_text(kinds)),
                                  html_escape(to_string(cell.fault)), html_escape(to_string(cell.mechanism)));
    out += "\n<p class=\"facts\">" + cell_facts(run, cell) + "</p>\n";
    if (!cell.findings.empty()) {
        out += "<ol class=\"findings\">";
        for (const std::string& finding : cell.findings) out += "<li>" + html_escape(finding) + "</li>";
        out += "</ol>\n";
    }
    return out + render_timeline(run, cell);
}

std::string timelines(const LabRun& run) {
    std::string out = "<h2>Timelines</h2>\n";
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
    for (const Fault f : faults_in_order(run)) {
        out += "<h2>" + html_escape(to_string(f)) + "</h2>\n<p class=\"desc\">" + html_escape(describe(f)) + "</p>\n";
        for (const CellResult& cell : run.cells) {
            if (cell.fault == f) out += cell_section(run, cell);
        }
    }
    return out;
}

}  // namespace

std::string render_html(const LabRun& run) {
    return page_head(run) + matrix(run) + timelines(run) + "</body>\n</html>\n";
}

}  // namespace lifeline::lab
