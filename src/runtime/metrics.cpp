#include "runtime/metrics.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

namespace lifeline::runtime {

void Histogram::observe(Duration d) {
    const double s = d.seconds_f();
    std::size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(d.ns(), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBounds.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], cumulative);
    }
    cumulative += buckets_[kBounds.size()].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
    out += fmt::format("{}_sum {}\n", name, static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
    out += fmt::format("{}_count {}\n", name, count_.load(std::memory_order_relaxed));
}

namespace {

void render_presence(std::string& out, const ServerMetrics::Presence& p) {
    auto line = [&](const char* name, const char* type, const char* help, const std::atomic<std::uint64_t>& v) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name,
                           v.load(std::memory_order_relaxed));
    };
    line("lifeline_presence_redis_up", "gauge", "1 while Redis answers the presence publisher.", p.redis_up);
    line("lifeline_presence_live", "gauge", "Sessions this gateway holds in fleet presence.", p.live);
    line("lifeline_presence_queued", "gauge", "Offline events waiting for Redis.", p.queued);
    line("lifeline_presence_commands_total", "counter", "Commands sent to Redis.", p.commands_total);
    line("lifeline_presence_dropped_total", "counter", "Offline events dropped: the buffer was full.", p.dropped_total);
    line("lifeline_presence_errors_total", "counter", "Error replies from Redis.", p.errors_total);
    line("lifeline_presence_fenced_out_total", "counter", "Writes Redis refused: a newer epoch holds the id.",
         p.fenced_out_total);
    line("lifeline_presence_reaped_total", "counter", "Sessions of dead gateways this gateway ended.", p.reaped_total);
    line("lifeline_presence_reconnects_total", "counter", "Reconnections to Redis.", p.reconnects_total);
}

}  // namespace

std::string ServerMetrics::prometheus_text(Duration loop_lag_max) const {
    std::string out;
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
    };
    auto gauge = [&](const char* name, const char* help, double v) {
        out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
    };
    gauge("lifeline_connections_open", "Connections currently open.",
          static_cast<double>(connections_open.load(std::memory_order_relaxed)));
    counter("lifeline_connections_accepted_total", "Connections accepted.",
            accepted_total.load(std::memory_order_relaxed));
    out +=
        "# HELP lifeline_connections_closed_total Connections closed, by reason.\n"
        "# TYPE lifeline_connections_closed_total counter\n";
    for (DisconnectReason r : kAllDisconnectReasons) {
        out += fmt::format("lifeline_connections_closed_total{{reason=\"{}\"}} {}\n", to_string(r),
                           closed_total[static_cast<std::size_t>(r)].load(std::memory_order_relaxed));
    }
    counter("lifeline_heartbeats_received_total", "PING frames received.",
            sessions.pings_received.load(std::memory_order_relaxed));
    counter("lifeline_heartbeats_sent_total", "PING and PONG frames sent.",
            sessions.heartbeats_sent.load(std::memory_order_relaxed));
    counter("lifeline_protocol_errors_total", "Connections that broke the protocol.",
            sessions.protocol_errors.load(std::memory_order_relaxed));
    counter("lifeline_accept_errors_total", "accept() failures (EMFILE and friends).",
            accept_errors_total.load(std::memory_order_relaxed));
    counter("lifeline_broadcast_dropped_total",
            "Broadcast frames not queued because the connection had its output budget queued already.",
            broadcast_dropped_total.load(std::memory_order_relaxed));
    counter("lifeline_loop_stalls_total", "Event loop wake-ups late by more than the stall threshold.",
            stalls_total.load(std::memory_order_relaxed));
    gauge("lifeline_loop_lag_max_seconds", "Worst event loop wake-up lag seen.", loop_lag_max.seconds_f());
    if (presence.enabled.load(std::memory_order_relaxed)) render_presence(out, presence);
    detection_latency.render(out, "lifeline_detection_latency_seconds",
                             "Silence from the last byte received to the dead verdict.");
    rtt.render(out, "lifeline_rtt_seconds", "Heartbeat round-trip samples.");
    return out;
}

}  // namespace lifeline::runtime

namespace lifeline::runtime {

std::string sum_prometheus_texts(const std::vector<std::string>& texts) {
    std::vector<std::string> order;        // Lines as first seen: comments, and sample series names.
    std::map<std::string, double> values;  // Series ("name{labels}") -> summed value.
    std::set<std::string> seen_comments;
    for (const std::string& text : texts) {
        std::size_t pos = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            const std::string line = text.substr(pos, end - pos);
            pos = end + 1;
            if (line.empty()) continue;
            if (line[0] == '#') {
                if (seen_comments.insert(line).second) order.push_back(line);
                continue;
            }
            const std::size_t space = line.rfind(' ');
            if (space == std::string::npos) continue;
            const std::string series = line.substr(0, space);
            char* parsed_end = nullptr;
            const double v = std::strtod(line.c_str() + space + 1, &parsed_end);
            if (parsed_end == line.c_str() + space + 1) continue;  // Not a number: not a sample.
            const auto [it, inserted] = values.emplace(series, v);
            if (inserted) {
                order.push_back(series);
            } else {
                const std::string name = series.substr(0, series.find('{'));
                it->second = name.find("_max") != std::string::npos ? std::max(it->second, v) : it->second + v;
            }
        }
    }
    std::string out;
    for (const std::string& line : order) {
        if (line[0] == '#') {
            out += line + "\n";
        } else {
            out += fmt::format("{} {}\n", line, values[line]);
        }
    }
    return out;
}

}  // namespace lifeline::runtime
