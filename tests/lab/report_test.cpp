#include "lab/report.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "lab/report_facts.hpp"

namespace lifeline::lab {
namespace {

Duration ms(std::int64_t n) { return Duration::milliseconds(n); }

WirePacket packet(std::int64_t at_ms, Side from, WireKind kind, std::uint32_t bytes = 0) {
    return WirePacket{ms(at_ms), from, kind, bytes};
}

SideOutcome detected(DisconnectReason reason, std::int64_t latency_ms, std::string message = {}) {
    return SideOutcome{true, reason, ms(latency_ms), std::move(message)};
}

// Six cells over three faults: grey (none on cable_pull, keepalive on freeze),
// green (keepalive and heartbeat on cable_pull), a late heartbeat on freeze and
// a wrong reason on crash whose finding carries markup. Lost bytes: none known
// for cable_pull/none and freeze/keepalive, nothing for the other cable_pull
// cells, 1.2 KiB for the late heartbeat and 37 B for the crash.
LabRun sample_run() {
    LabRun run;
    run.kernel = "6.1.0-test";
    run.started_at = "2024-05-01T12:00:00Z";
    run.elapsed = Duration::seconds(192);
    run.captured = true;

    CellResult cable_none{
        Fault::cable_pull, Mechanism::none, {}, {}, std::nullopt, ms(0), ms(-120), std::nullopt, {}, true, {}};
    cable_none.wire = {packet(-300, Side::server, WireKind::data, 40), packet(-290, Side::client, WireKind::ack),
                       packet(500, Side::server, WireKind::data, 40)};

    CellResult cable_keepalive{
        Fault::cable_pull, Mechanism::keepalive, {}, {}, ms(4000), ms(1000), ms(-5), std::nullopt, {}, true, {}};
    cable_keepalive.server = detected(DisconnectReason::keepalive_timeout, 4012, "Connection timed out");
    cable_keepalive.lost_bytes = 0;
    cable_keepalive.wire = {packet(-500, Side::client, WireKind::data, 12), packet(-499, Side::server, WireKind::ack),
                            packet(2010, Side::server, WireKind::keepalive_probe),
                            packet(1010, Side::server, WireKind::keepalive_probe),
                            packet(3010, Side::server, WireKind::keepalive_probe)};

    CellResult cable_heartbeat{Fault::cable_pull, Mechanism::heartbeat, {}, {},   ms(1000), ms(100),
                               ms(-200),          std::nullopt,         {}, true, {}};
    cable_heartbeat.server = detected(DisconnectReason::heartbeat_timeout, 1012);
    cable_heartbeat.lost_bytes = 0;
    cable_heartbeat.client = detected(DisconnectReason::heartbeat_timeout, 1003);
    cable_heartbeat.wire = {packet(-250, Side::server, WireKind::data, 8),
                            packet(-200, Side::client, WireKind::data, 8),
                            packet(400, Side::server, WireKind::retransmission, 8)};

    CellResult freeze_keepalive{
        Fault::freeze, Mechanism::keepalive, {}, {}, std::nullopt, ms(1000), ms(-10), std::nullopt, {}, true, {}};
    for (int i = 1; i <= 11; ++i) {
        freeze_keepalive.wire.push_back(packet(i * 1000, Side::server, WireKind::keepalive_probe));
        freeze_keepalive.wire.push_back(packet(i * 1000 + 1, Side::client, WireKind::ack));
    }

    CellResult freeze_heartbeat{Fault::freeze, Mechanism::heartbeat, {}, {},    ms(1000), ms(100),
                                ms(-240),      std::nullopt,         {}, false, {}};
    freeze_heartbeat.server = detected(DisconnectReason::heartbeat_timeout, 1500);
    freeze_heartbeat.lost_bytes = 1229;
    freeze_heartbeat.findings = {"server: LATE, 1500 ms > budget 1000 ms + 100 ms"};

    CellResult crash_none{Fault::crash, Mechanism::none, {}, {},    ms(100), ms(100),
                          ms(-30),      std::nullopt,    {}, false, {}};
    crash_none.server = detected(DisconnectReason::peer_reset, 3);
    crash_none.lost_bytes = 37;
    crash_none.findings = {"server: WRONG REASON peer_reset, expected peer_closed <script>alert(1)</script>"};
    crash_none.wire = {packet(2, Side::client, WireKind::rst)};

    run.cells = {cable_none, cable_keepalive, cable_heartbeat, freeze_keepalive, freeze_heartbeat, crash_none};
    return run;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

std::size_t code_points(const std::string& text) {
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// The table's lines: from the header row to the first empty line after it.
std::vector<std::string> table_lines(const std::string& table) {
    std::vector<std::string> out;
    bool inside = false;
    for (const std::string& line : lines_of(table)) {
        if (line.rfind("fault ", 0) == 0) inside = true;
        if (inside && line.empty()) break;
        if (inside) out.push_back(line);
    }
    return out;
}

std::string row_of(const std::string& table, const std::string& fault, const std::string& mechanism) {
    for (const std::string& line : table_lines(table)) {
        std::istringstream words(line);
        std::string first;
        std::string second;
        words >> first >> second;
        if (first == fault && second == mechanism) return line;
    }
    return {};
}

// A table line's fields: columns are at least two spaces apart, and no field
// holds two spaces in a row.
std::vector<std::string> fields_of(const std::string& line) {
    static const std::regex gap("  +");
    std::vector<std::string> out;
    const std::string trimmed = std::regex_replace(line, std::regex("^ +| +$"), "");
    std::copy(std::sregex_token_iterator(trimmed.begin(), trimmed.end(), gap, -1), std::sregex_token_iterator(),
              std::back_inserter(out));
    return out;
}

// The field of `line` under the header's column `title`.
std::string field_under(const std::string& table, const std::string& line, const std::string& title) {
    const std::vector<std::string> titles = fields_of(table_lines(table).front());
    const auto at = std::find(titles.begin(), titles.end(), title);
    const std::vector<std::string> fields = fields_of(line);
    if (at == titles.end() || fields.size() != titles.size()) return "(no column " + title + " in: " + line + ")";
    return fields[static_cast<std::size_t>(at - titles.begin())];
}

std::size_t count_of(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

TEST(ReportTable, HasOneRowPerCellGroupedByFault) {
    const LabRun run = sample_run();
    const std::string table = render_table(run, false);
    for (const CellResult& cell : run.cells) {
        EXPECT_FALSE(row_of(table, std::string(to_string(cell.fault)), std::string(to_string(cell.mechanism))).empty())
            << to_string(cell.fault) << "/" << to_string(cell.mechanism) << " missing from\n"
            << table;
    }
    // Header, rule under it, six rows and a rule between each pair of faults.
    EXPECT_EQ(table_lines(table).size(), 2U + 6U + 2U) << table;
    EXPECT_NE(table.find("keepalive 1s/1s×3, user timeout 4s, heartbeat 250ms/1s"), std::string::npos) << table;
    EXPECT_NE(table.find("kernel 6.1.0-test"), std::string::npos);
    EXPECT_NE(table.find("6 cells, 4 as expected"), std::string::npos) << table;
    EXPECT_NE(table.find("tolerance +100 ms heartbeats, +1 s kernel"), std::string::npos) << table;
}

TEST(ReportTable, RowsShowWhoDetectedFirstAndHowFast) {
    const std::string table = render_table(sample_run(), false);
    const std::string heartbeat = row_of(table, "cable_pull", "heartbeat");
    EXPECT_NE(heartbeat.find("yes"), std::string::npos) << heartbeat;
    EXPECT_NE(heartbeat.find("client+server"), std::string::npos) << heartbeat;  // The client was 9 ms earlier.
    EXPECT_NE(heartbeat.find("heartbeat_timeout"), std::string::npos);
    EXPECT_NE(heartbeat.find("1003 ms"), std::string::npos);
    EXPECT_NE(heartbeat.find("1000 ms"), std::string::npos);
    EXPECT_NE(heartbeat.find("1.00"), std::string::npos);
    EXPECT_NE(heartbeat.find(" ok"), std::string::npos);

    const std::string none = row_of(table, "cable_pull", "none");
    EXPECT_NE(none.find(" no "), std::string::npos) << none;
    EXPECT_NE(none.find("—"), std::string::npos);

    const std::string keepalive = row_of(table, "cable_pull", "keepalive");
    EXPECT_NE(keepalive.find("4012 ms"), std::string::npos) << keepalive;
    EXPECT_NE(keepalive.find("   3  "), std::string::npos) << keepalive;  // Three probes, right-aligned.
}

TEST(ReportTable, BadCellsNameTheTroubleAndFootnoteTheFindings) {
    const std::string table = render_table(sample_run(), false);
    const std::string late = row_of(table, "freeze", "heartbeat");
    EXPECT_NE(late.find("✗ LATE [1]"), std::string::npos) << late;
    EXPECT_NE(late.find("1.50"), std::string::npos) << late;
    const std::string wrong = row_of(table, "crash", "none");
    EXPECT_NE(wrong.find("✗ WRONG REASON [2]"), std::string::npos) << wrong;
    EXPECT_NE(table.find("\n[1] freeze/heartbeat: server: LATE, 1500 ms > budget 1000 ms + 100 ms\n"),
              std::string::npos)
        << table;
    EXPECT_NE(table.find("\n[2] crash/none: server: WRONG REASON peer_reset"), std::string::npos) << table;
}

TEST(ReportTable, VerdictIsTheKindEachFindingNamesFirst) {
    LabRun run = sample_run();
    // The lab's own wording: the explanation mentions "no detection", but the kind comes first.
    run.cells[4].findings = {"server: UNEXPECTED peer_closed after 3 ms (expected no detection within 12000 ms)",
                             "client: MISSED, expected heartbeat_timeout within 1100 ms",
                             "server: LATE, 1500 ms > budget 1000 ms + 100 ms"};
    // Free wording is read by its words; "latency" is not "late".
    run.cells[5].findings = {"the server's latency was fine but it went away for the wrong reason"};
    const std::string table = render_table(run, false);
    EXPECT_NE(row_of(table, "freeze", "heartbeat").find("✗ UNEXPECTED, MISSED, LATE [1,2,3]"), std::string::npos)
        << table;
    EXPECT_NE(row_of(table, "crash", "none").find("✗ WRONG REASON [4]"), std::string::npos) << table;
}

TEST(ReportTable, VerdictWithoutRecognisableFindingsComesFromTheData) {
    LabRun run = sample_run();
    run.cells[1].as_expected = false;  // cable_pull/keepalive, now as if nothing had been detected.
    run.cells[1].server = {};
    const std::string table = render_table(run, false);
    EXPECT_NE(row_of(table, "cable_pull", "keepalive").find("✗ MISSED"), std::string::npos) << table;
}

TEST(ReportTable, EveryTableLineHasTheSameDisplayWidth) {
    const std::vector<std::string> lines = table_lines(render_table(sample_run(), false));
    ASSERT_GT(lines.size(), 6U);
    for (const std::string& line : lines) EXPECT_EQ(code_points(line), code_points(lines.front())) << line;
}

TEST(ReportTable, ColourWrapsTheVerdictOnly) {
    const LabRun run = sample_run();
    const std::string plain = render_table(run, false);
    const std::string colored = render_table(run, true);
    EXPECT_EQ(plain.find('\x1b'), std::string::npos);
    EXPECT_EQ(count_of(colored, "\x1b[32m"), 4U);
    EXPECT_EQ(count_of(colored, "\x1b[31m"), 2U);
    std::string stripped = colored;
    for (const char* code : {"\x1b[32m", "\x1b[31m", "\x1b[0m"}) {
        for (std::size_t at = stripped.find(code); at != std::string::npos; at = stripped.find(code))
            stripped.erase(at, std::string(code).size());
    }
    EXPECT_EQ(stripped, plain);
}

TEST(ReportTable, ProbesAreADashWithoutCapture) {
    LabRun run = sample_run();
    run.captured = false;
    const std::string table = render_table(run, false);
    EXPECT_EQ(row_of(table, "cable_pull", "keepalive").find("   3  "), std::string::npos);
    EXPECT_NE(table.find("no wire evidence captured"), std::string::npos);
}

TEST(ReportTable, TerminalControlCharactersInFindingsAreNeutralised) {
    LabRun run = sample_run();
    run.cells[4].findings = {"late\x1b[2Jand\nmore"};
    const std::string table = render_table(run, false);
    EXPECT_EQ(table.find('\x1b'), std::string::npos);
    EXPECT_NE(table.find("late [2Jand more"), std::string::npos) << table;
}

TEST(ReportTable, LostColumnIsADashWithoutApplicationDataElseAHumanSize) {
    LabRun run = sample_run();
    run.cells[3].lost_bytes = 65536;    // freeze/keepalive
    run.cells[5].lost_bytes = 3250586;  // crash/none: 3.1 MiB
    const std::string table = render_table(run, false);
    const std::vector<std::string> titles = fields_of(table_lines(table).front());
    const auto ratio = std::find(titles.begin(), titles.end(), "ratio");
    ASSERT_LT(ratio + 1, titles.end()) << table;
    EXPECT_EQ(*(ratio + 1), "lost") << table;  // Next to the detection time it goes with.
    EXPECT_EQ(field_under(table, row_of(table, "cable_pull", "none"), "lost"), "—") << table;
    EXPECT_EQ(field_under(table, row_of(table, "cable_pull", "keepalive"), "lost"), "0") << table;
    EXPECT_EQ(field_under(table, row_of(table, "freeze", "heartbeat"), "lost"), "1.2 KiB") << table;
    EXPECT_EQ(field_under(table, row_of(table, "freeze", "keepalive"), "lost"), "64 KiB") << table;
    EXPECT_EQ(field_under(table, row_of(table, "crash", "none"), "lost"), "3.1 MiB") << table;
    const std::vector<std::string> lines = table_lines(table);
    for (const std::string& line : lines) EXPECT_EQ(code_points(line), code_points(lines.front())) << line;

    run.cells[5].lost_bytes = 37;
    const std::string bytes = render_table(run, false);
    EXPECT_EQ(field_under(bytes, row_of(bytes, "crash", "none"), "lost"), "37 B") << bytes;
}

TEST(ReportTable, LegendExplainsLost) {
    const std::string table = render_table(sample_run(), false);
    EXPECT_NE(table.find("; lost: application bytes handed over after the fault that never arrived (— no "
                         "application data in the cell)\n"),
              std::string::npos)
        << table;
}

TEST(ReportTable, ConfigLineNamesTheNatTimeoutAndIpv6AsThePageDoes) {
    LabRun run = sample_run();
    const std::string v4 = render_table(run, false);
    EXPECT_NE(v4.find("settle 2s, limit 12s, nat timeout 2s; kernel 6.1.0-test"), std::string::npos) << v4;
    EXPECT_EQ(v4.find("IPv6"), std::string::npos) << v4;

    run.config.nat_timeout = Duration::milliseconds(1500);
    run.config.ipv6 = true;
    const std::string v6 = render_table(run, false);
    EXPECT_NE(v6.find("limit 12s, nat timeout 1.5s · IPv6; kernel"), std::string::npos) << v6;
    EXPECT_NE(render_html(run).find("<p class=\"meta\">keepalive 1s/1s×3, user timeout 4s, heartbeat 250ms/1s, "
                                    "settle 2s, limit 12s, nat timeout 1.5s · IPv6</p>"),
              std::string::npos);
}

TEST(ReportFacts, FormatBytesUsesBinaryUnitsAndAtMostThreeDigits) {
    using report_detail::format_bytes;
    EXPECT_EQ(format_bytes(0), "0");
    EXPECT_EQ(format_bytes(1), "1 B");
    EXPECT_EQ(format_bytes(37), "37 B");
    EXPECT_EQ(format_bytes(999), "999 B");
    EXPECT_EQ(format_bytes(1000), "1 KiB");  // "1000 B" would be a fourth digit.
    EXPECT_EQ(format_bytes(1024), "1 KiB");
    EXPECT_EQ(format_bytes(1229), "1.2 KiB");
    EXPECT_EQ(format_bytes(10 * 1024 - 20), "10 KiB");  // 9.98 rounds into the next digit, not "10.0".
    EXPECT_EQ(format_bytes(65536), "64 KiB");
    EXPECT_EQ(format_bytes(999 * 1024), "999 KiB");
    EXPECT_EQ(format_bytes(1023 * 1024), "1 MiB");
    EXPECT_EQ(format_bytes(3250586), "3.1 MiB");
    EXPECT_EQ(format_bytes(5ULL << 30), "5 GiB");
    EXPECT_EQ(format_bytes(UINT64_MAX), "16 EiB");
}

TEST(ReportWireSummary, ListsProbeOffsetsSpacingAndTheEnd) {
    const std::string summary = render_wire_summary(sample_run());
    const std::vector<std::string> lines = lines_of(summary);
    ASSERT_EQ(lines.size(), 2U) << summary;  // Only the keepalive cells with probes.
    EXPECT_EQ(lines[0],
              "cable_pull/keepalive: server probes at +1.01s +2.01s +3.01s (spacing 1.00s), then server "
              "keepalive_timeout at +4.01s");
    EXPECT_NE(lines[1].find("freeze/keepalive:     server probes at +1.00s +2.00s"), std::string::npos) << lines[1];
    EXPECT_NE(lines[1].find("+11.00s (spacing 1.00s), not detected within 12s"), std::string::npos) << lines[1];
}

TEST(ReportWireSummary, IsEmptyWithoutCapture) {
    LabRun run = sample_run();
    run.captured = false;
    EXPECT_EQ(render_wire_summary(run), "");
}

TEST(ReportJson, CarriesTheRunAndSurvivesARoundTrip) {
    const nlohmann::json j = nlohmann::json::parse(to_json(sample_run()).dump(2));
    EXPECT_EQ(j["config"]["keepalive_idle_ms"], 1000);
    EXPECT_EQ(j["config"]["heartbeat_interval_ms"], 250);
    EXPECT_EQ(j["config"]["keepalive_count"], 3);
    EXPECT_EQ(j["kernel"], "6.1.0-test");
    EXPECT_EQ(j["summary"]["cells"], 6);
    EXPECT_EQ(j["summary"]["as_expected"], 4);
    ASSERT_EQ(j["cells"].size(), 6U);

    const nlohmann::json& none = j["cells"][0];
    EXPECT_EQ(none["mechanism"], "none");
    EXPECT_TRUE(none["budget_ms"].is_null());
    EXPECT_FALSE(none["server"]["detected"].get<bool>());
    EXPECT_TRUE(none["server"]["reason"].is_null());
    EXPECT_TRUE(none["server"]["latency_ms"].is_null());

    const nlohmann::json& keepalive = j["cells"][1];
    EXPECT_EQ(keepalive["server"]["reason"], "keepalive_timeout");
    EXPECT_EQ(keepalive["server"]["latency_ms"], 4012);
    EXPECT_EQ(keepalive["server"]["message"], "Connection timed out");
    EXPECT_EQ(keepalive["budget_ms"], 4000);
    EXPECT_EQ(keepalive["tolerance_ms"], 1000);
    EXPECT_EQ(keepalive["probes"], 3);
    EXPECT_EQ(keepalive["last_byte_from_client_ms"], -5);
    ASSERT_EQ(keepalive["wire"].size(), 5U);
    EXPECT_EQ(keepalive["wire"][0]["at_ms"], -500);
    EXPECT_EQ(keepalive["wire"][0]["from"], "client");
    EXPECT_EQ(keepalive["wire"][0]["kind"], "data");
    EXPECT_EQ(keepalive["wire"][0]["bytes"], 12);
    EXPECT_EQ(keepalive["verdict"], "ok");

    const nlohmann::json& heartbeat = j["cells"][2];
    EXPECT_EQ(heartbeat["detected_by"], nlohmann::json::array({"client", "server"}));

    const nlohmann::json& late = j["cells"][4];
    EXPECT_FALSE(late["as_expected"].get<bool>());
    EXPECT_EQ(late["verdict"], "LATE");
    ASSERT_EQ(late["findings"].size(), 1U);
    EXPECT_EQ(late["findings"][0], "server: LATE, 1500 ms > budget 1000 ms + 100 ms");
}

TEST(ReportJson, FractionalMillisecondsAndMissingCapture) {
    LabRun run = sample_run();
    run.captured = false;
    run.cells[0].wire[0].at = Duration::microseconds(-2500);
    const nlohmann::json j = to_json(run);
    EXPECT_DOUBLE_EQ(j["cells"][0]["wire"][0]["at_ms"].get<double>(), -2.5);
    EXPECT_TRUE(j["cells"][1]["probes"].is_null());
}

TEST(ReportJson, LostBytesAndTheNatAndIpv6Config) {
    LabRun run = sample_run();
    run.cells[2].lost_bytes = 5'000'000'000ULL;  // Past 32 bits: still an exact integer.
    const nlohmann::json j = nlohmann::json::parse(to_json(run).dump());
    EXPECT_TRUE(j["cells"][0]["lost_bytes"].is_null());
    EXPECT_TRUE(j["cells"][1]["lost_bytes"].is_number_integer());
    EXPECT_EQ(j["cells"][1]["lost_bytes"], 0);
    EXPECT_EQ(j["cells"][2]["lost_bytes"], 5'000'000'000ULL);
    EXPECT_EQ(j["cells"][4]["lost_bytes"], 1229);
    EXPECT_EQ(j["config"]["nat_timeout_ms"], 2000);
    EXPECT_EQ(j["config"]["ipv6"], false);

    run.config.nat_timeout = Duration::milliseconds(1500);
    run.config.ipv6 = true;
    const nlohmann::json v6 = to_json(run);
    EXPECT_EQ(v6["config"]["nat_timeout_ms"], 1500);
    EXPECT_EQ(v6["config"]["ipv6"], true);
}

TEST(ReportHtml, IsOneSelfContainedPageWithOneSvgPerCell) {
    const LabRun run = sample_run();
    const std::string html = render_html(run);
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0U);
    EXPECT_NE(html.find("</html>"), std::string::npos);
    EXPECT_EQ(count_of(html, "<svg"), run.cells.size());
    EXPECT_EQ(count_of(html, "</svg>"), run.cells.size());
    EXPECT_EQ(html.find("<script"), std::string::npos);
    EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
    EXPECT_EQ(html.find("src="), std::string::npos);
}

TEST(ReportHtml, MatrixColoursCellsByOutcome) {
    const std::string html = render_html(sample_run());
    EXPECT_EQ(count_of(html, "<td class=\"ok\""),
              2U);                                         // cable_pull/keepalive, cable_pull/heartbeat.
    EXPECT_EQ(count_of(html, "<td class=\"quiet\""), 2U);  // cable_pull/none, freeze/keepalive.
    EXPECT_EQ(count_of(html, "<td class=\"bad\""), 2U);    // freeze/heartbeat, crash/none.
    EXPECT_EQ(count_of(html, "<td class=\"absent\""),
              3U);  // freeze/none, crash/keepalive, crash/heartbeat.
    EXPECT_NE(html.find("<b>1003 ms</b><br>heartbeat · client+server"), std::string::npos);
    EXPECT_NE(html.find("not detected within 12s"), std::string::npos);
    EXPECT_NE(html.find("href=\"#cell-freeze_heartbeat\""), std::string::npos);
    EXPECT_NE(html.find("id=\"cell-freeze_heartbeat\""), std::string::npos);
}

TEST(ReportHtml, FactsAndMatrixShowLostBytes) {
    const std::string html = render_html(sample_run());
    EXPECT_NE(html.find(" · lost: 1.2 KiB · "), std::string::npos);  // freeze/heartbeat
    EXPECT_NE(html.find(" · lost: 0 · "), std::string::npos);        // cable_pull/keepalive
    EXPECT_EQ(count_of(html, " · lost: — (no application data) · "), 2U);
    // The matrix names a loss only when there is one.
    EXPECT_NE(html.find("<br>lost 1.2 KiB</a></td>"), std::string::npos);
    EXPECT_NE(html.find("<br>lost 37 B</a></td>"), std::string::npos);
    EXPECT_EQ(count_of(html, "<br>lost "), 2U);
}

TEST(ReportHtml, StaysSmallForAFullRun) {
    LabRun run = sample_run();
    run.cells.clear();
    for (const Fault fault : kAllFaults) {
        for (const Mechanism mechanism : kAllMechanisms) {
            CellResult cell{fault, mechanism, {}, {}, ms(1000), ms(100), ms(-100), std::nullopt, {}, true, {}};
            cell.server = detected(DisconnectReason::heartbeat_timeout, 1010);
            for (int i = 0; i < 200; ++i) {
                const WireKind kind =
                    i % 20 == 0 ? WireKind::keepalive_probe : (i % 2 ? WireKind::ack : WireKind::data);
                cell.wire.push_back(packet(-2000 + i * 70, i % 2 ? Side::client : Side::server, kind, 100));
            }
            run.cells.push_back(std::move(cell));
        }
    }
    ASSERT_EQ(run.cells.size(), std::size(kAllFaults) * std::size(kAllMechanisms));
    const std::string html = render_html(run);
    EXPECT_LT(html.size(), 1'000'000U);
    EXPECT_EQ(count_of(html, "<svg"), run.cells.size());
    EXPECT_NE(html.find("data/ack ticks: 50 of"), std::string::npos);
}

TEST(Report, EveryFaultRendersInEveryView) {
    LabRun run = sample_run();
    run.cells.clear();
    for (const Fault fault : kAllFaults) {
        CellResult cell{fault, Mechanism::heartbeat, {}, {}, ms(1000), ms(100), ms(-100), std::nullopt, {}, true, {}};
        cell.server = detected(DisconnectReason::heartbeat_timeout, 1010);
        run.cells.push_back(std::move(cell));
    }
    const std::string table = render_table(run, false);
    const nlohmann::json j = to_json(run);
    const std::string html = render_html(run);
    ASSERT_EQ(j["cells"].size(), std::size(kAllFaults));
    for (std::size_t i = 0; i < std::size(kAllFaults); ++i) {
        const std::string name(to_string(kAllFaults[i]));
        EXPECT_FALSE(row_of(table, name, "heartbeat").empty()) << name << " missing from\n" << table;
        EXPECT_EQ(j["cells"][i]["fault"], name);
        EXPECT_NE(html.find("<h2>" + name + "</h2>"), std::string::npos) << name;
        EXPECT_NE(html.find("id=\"cell-" + name + "_heartbeat\""), std::string::npos) << name;
    }
    for (const std::string name : {"nat_expiry", "server_reboot"})
        EXPECT_NE(table.find(name), std::string::npos) << name << " missing from\n" << table;
    EXPECT_EQ(count_of(html, "<svg"), std::size(kAllFaults));
    const std::vector<std::string> lines = table_lines(table);
    for (const std::string& line : lines) EXPECT_EQ(code_points(line), code_points(lines.front())) << line;
}

class ReportFiles : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (std::filesystem::temp_directory_path() / "lifeline-report-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        root_ = pattern;
    }
    void TearDown() override {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
    }
    std::filesystem::path root_;
};

TEST_F(ReportFiles, CreatesTheDirectoryAndBothFiles) {
    const std::filesystem::path dir = root_ / "nested" / "lab";
    const Result<void> written = write_report(sample_run(), dir.string());
    ASSERT_TRUE(written.ok()) << written.error().message;
    std::ifstream json_file(dir / "lab.json");
    ASSERT_TRUE(json_file);
    std::stringstream json_text;
    json_text << json_file.rdbuf();
    EXPECT_NE(json_text.str().find("\n  \"captured\": true"),
              std::string::npos);  // Two-space indent.
    EXPECT_EQ(nlohmann::json::parse(json_text.str())["cells"].size(), 6U);
    std::ifstream html_file(dir / "lab.html");
    ASSERT_TRUE(html_file);
    std::string first_line;
    std::getline(html_file, first_line);
    EXPECT_EQ(first_line, "<!DOCTYPE html>");
}

TEST_F(ReportFiles, InvalidUtf8DoesNotThrow) {
    LabRun run = sample_run();
    run.cells[0].server.message = "bad \xff byte";
    EXPECT_TRUE(write_report(run, root_.string()).ok());
}

TEST_F(ReportFiles, UnwritablePathIsAnErrorValue) {
    const Result<void> written = write_report(sample_run(), "/proc/forbidden/x");
    ASSERT_FALSE(written.ok());
    EXPECT_NE(written.error().message.find("/proc/forbidden"), std::string::npos) << written.error().message;
    EXPECT_NE(written.error().sys_errno, 0);
}

}  // namespace
}  // namespace lifeline::lab
