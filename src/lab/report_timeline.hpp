// Internal to the lab's report: one cell's timeline as an inline SVG element,
// for the HTML page (report_html.cpp).
#pragma once

#include <string>

#include "lab/lab_result.hpp"

namespace lifeline::lab::report_detail {

// Exactly one <svg>…</svg> element, ending in a newline: time relative to the
// fault from -settle to the lab's limit, the budget and tolerance bands, the
// wire's packets as ticks (the server's above the axis, the client's below;
// data and ACKs thinned to at most 50), the fault, the last byte from the
// client and each side's detection. All text from the run is HTML-escaped.
std::string render_timeline(const LabRun& run, const CellResult& cell);

}  // namespace lifeline::lab::report_detail
