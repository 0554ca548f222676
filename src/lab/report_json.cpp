// The run as JSON, for scripts (lab.json).
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "lab/report.hpp"
#include "lab/report_facts.hpp"

namespace lifeline::lab {

using namespace report_detail;

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

nlohmann::json packet_json(const WirePacket& p) {
    nlohmann::json packet = nlohmann::json::object();
    packet["at_ms"] = ms_json(p.at);
    packet["from"] = std::string(to_string(p.from));
    packet["kind"] = std::string(to_string(p.kind));
    packet["bytes"] = p.payload_bytes;
    return packet;
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
    j["lost_bytes"] = cell.lost_bytes ? nlohmann::json(*cell.lost_bytes) : nullptr;
    j["probes"] = captured ? nlohmann::json(count_probes(cell)) : nullptr;
    nlohmann::json wire = nlohmann::json::array();
    for (const WirePacket& p : cell.wire) wire.push_back(packet_json(p));
    j["wire"] = std::move(wire);
    j["findings"] = cell.findings;
    j["as_expected"] = cell.as_expected;
    j["verdict"] = verdict_text(verdicts(cell));
    return j;
}

nlohmann::json config_json(const LabConfig& c) {
    nlohmann::json config = nlohmann::json::object();
    config["keepalive_idle_ms"] = ms_json(c.keepalive_idle);
    config["keepalive_interval_ms"] = ms_json(c.keepalive_interval);
    config["keepalive_count"] = c.keepalive_count;
    config["user_timeout_ms"] = ms_json(c.user_timeout);
    config["heartbeat_interval_ms"] = ms_json(c.heartbeat_interval);
    config["heartbeat_timeout_ms"] = ms_json(c.heartbeat_timeout);
    config["limit_ms"] = ms_json(c.limit);
    config["settle_ms"] = ms_json(c.settle);
    config["nat_timeout_ms"] = ms_json(c.nat_timeout);
    config["ipv6"] = c.ipv6;
    return config;
}

}  // namespace

nlohmann::json to_json(const LabRun& run) {
    nlohmann::json j = nlohmann::json::object();
    j["config"] = config_json(run.config);
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

}  // namespace lifeline::lab
