#include "lab/report_timeline.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string_view>
#include <vector>

#include "lab/report_facts.hpp"

namespace lifeline::lab::report_detail {

namespace {

// Data and ACK ticks drawn per timeline; the rest is thinned away so a full
// run (45 cells of a few hundred packets) stays small. Probes, RSTs, FINs and
// retransmissions are always drawn.
constexpr std::size_t kMaxBackgroundTicksPerCell = 50;

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

// The promise: the budget, then the tolerance beyond it.
void append_budget_bands(std::string& svg, const Timeline& tl, const CellResult& cell) {
    if (!cell.budget) return;
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

// The fault, and the last byte the server had from the client before it.
void append_fault(std::string& svg, const Timeline& tl, const CellResult& cell) {
    const double fault_x = tl.x(Duration::zero());
    svg += fmt::format(R"(<path class="fault" d="M{:.1f} {}V{}"/>)", fault_x, Timeline::kTop - 4, Timeline::kBottom);
    svg += fmt::format(R"(<text class="fault-label" x="{:.1f}" y="{}">{}</text>)", fault_x + 4, Timeline::kTop - 8,
                       html_escape(to_string(cell.fault)));
    if (!cell.last_byte_from_client) return;
    const double last_x = tl.x(*cell.last_byte_from_client);
    svg += fmt::format(R"(<path class="lastbyte-line" d="M{:.1f} {}V{}"/>)", last_x, Timeline::kTop, Timeline::kAxis);
    svg += fmt::format(
        R"(<circle class="lastbyte" cx="{:.1f}" cy="{}" r="3.5"><title>last byte from the client at {}</title></circle>)",
        last_x, Timeline::kAxis, html_escape(format_offset(*cell.last_byte_from_client)));
    svg += fmt::format(R"(<text x="{:.1f}" y="{}" text-anchor="end">last byte</text>)", last_x - 4, Timeline::kTop - 8);
}

// Each side's detection: the server above the axis, the client below.
void append_detections(std::string& svg, const Timeline& tl, const LabRun& run, const CellResult& cell) {
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
        // Labels near the right edge go to the diamond's left, so they stay inside the picture.
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
}

}  // namespace

std::string render_timeline(const LabRun& run, const CellResult& cell) {
    Timeline tl{Duration::zero() - run.config.settle, run.config.limit};
    if (tl.to - tl.from < Duration::seconds(1)) tl.to = tl.from + Duration::seconds(1);
    const std::int64_t span_s = (tl.to - tl.from).ms() / 1000 + 1;

    std::string svg = fmt::format(R"(<svg viewBox="0 0 {0} {1}" width="{0}" height="{1}" role="img">)",
                                  Timeline::kWidth, Timeline::kHeight);
    svg += "<title>" + html_escape(cell_name(cell)) + ": time relative to the fault, in seconds</title>";
    append_budget_bands(svg, tl, cell);
    append_ticks(svg, tl, span_s);
    if (cell.budget) {
        svg += fmt::format(R"(<text x="{:.1f}" y="{}">budget {}</text>)", tl.x(Duration::zero()) + 4,
                           Timeline::kBottom - 4, html_escape(format_ms(*cell.budget)));
    }
    svg += fmt::format(R"(<path class="axis" d="M{} {}H{}"/>)", Timeline::kLeft, Timeline::kAxis, Timeline::kRight);
    svg += fmt::format(R"(<text x="6" y="{}">server</text><text x="6" y="{}">client</text>)", Timeline::kAxis - 8,
                       Timeline::kAxis + 16);
    append_wire(svg, tl, cell);
    append_fault(svg, tl, cell);
    append_detections(svg, tl, run, cell);
    return svg + "</svg>\n";
}

}  // namespace lifeline::lab::report_detail
