#include "lifeline/events.hpp"

#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>

namespace lifeline {

std::string_view to_string(EventKind kind) {
    switch (kind) {
        case EventKind::listening:
            return "listening";
        case EventKind::connect:
            return "connect";
        case EventKind::hello:
            return "hello";
        case EventKind::dead:
            return "dead";
        case EventKind::closed:
            return "closed";
        case EventKind::error:
            return "error";
        case EventKind::stall:
            return "stall";
        case EventKind::rtt:
            return "rtt";
        case EventKind::offline:
            return "offline";
    }
    return "unknown";
}

namespace {
// Events carry wall-clock time for people and log pipelines; deadlines never use it.
std::string wall_clock_now() {
    const auto now = std::chrono::system_clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

double ms(Duration d) { return d.ms_f(); }
}  // namespace

std::string to_json_line(const Event& e) {
    nlohmann::ordered_json j;  // Keeps "ts" and "event" first, as people read them.
    j["ts"] = wall_clock_now();
    j["event"] = std::string(to_string(e.kind));
    if (e.conn != 0) j["conn"] = e.conn;
    if (!e.peer.empty()) j["peer"] = e.peer;
    if (!e.client_id.empty()) j["id"] = e.client_id;
    if (e.reason) j["reason"] = std::string(to_string(*e.reason));
    switch (e.kind) {
        case EventKind::hello:
            j["interval_ms"] = ms(e.interval);
            j["timeout_ms"] = ms(e.timeout);
            break;
        case EventKind::dead:
            j["silence_ms"] = ms(e.silence);
            j["budget_ms"] = ms(e.budget);
            j["rtt_ms"] = ms(e.rtt);
            break;
        case EventKind::closed:
            j["duration_ms"] = ms(e.duration);
            j["bytes_in"] = e.bytes_in;
            j["bytes_out"] = e.bytes_out;
            if (e.bytes_unsent > 0) j["bytes_unsent"] = e.bytes_unsent;
            j["data_in"] = e.data_in;
            j["data_out"] = e.data_out;
            break;
        case EventKind::stall:
            j["stall_ms"] = ms(e.silence);
            break;
        case EventKind::rtt:
            j["rtt_ms"] = ms(e.rtt);
            break;
        default:
            break;
    }
    switch (e.kind) {
        case EventKind::hello:
        case EventKind::offline:
            if (e.epoch != 0) j["epoch"] = e.epoch;
            break;
        default:
            break;
    }
    if (!e.message.empty()) j[e.kind == EventKind::listening ? "address" : "message"] = e.message;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string to_text_line(const Event& e) {
    std::string out = wall_clock_now().substr(11, 12) + " " + std::string(to_string(e.kind));
    if (e.conn != 0) out += fmt::format(" conn={}", e.conn);
    if (!e.peer.empty()) out += " peer=" + e.peer;
    if (!e.client_id.empty()) out += " id=" + e.client_id;
    if (e.reason) out += " reason=" + std::string(to_string(*e.reason));
    switch (e.kind) {
        case EventKind::hello:
            out += " interval=" + to_string(e.interval) + " timeout=" + to_string(e.timeout);
            break;
        case EventKind::dead:
            out += " silence=" + to_string(e.silence) + " budget=" + to_string(e.budget) + " rtt=" + to_string(e.rtt);
            break;
        case EventKind::closed:
            out += fmt::format(" duration={} in={}B out={}B", to_string(e.duration), e.bytes_in, e.bytes_out);
            if (e.bytes_unsent > 0) out += fmt::format(" unsent={}B", e.bytes_unsent);
            break;
        case EventKind::stall:
            out += " stall=" + to_string(e.silence);
            break;
        case EventKind::rtt:
            out += " rtt=" + to_string(e.rtt);
            break;
        default:
            break;
    }
    if (!e.message.empty()) out += (e.kind == EventKind::listening ? " address=" : " message=") + e.message;
    return out;
}

}  // namespace lifeline
