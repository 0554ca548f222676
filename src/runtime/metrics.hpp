// Server counters and histograms, updated from loop threads with relaxed
// atomics and rendered as Prometheus text. Internal to src/runtime.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/time.hpp"

namespace lifeline::runtime {

// Fixed buckets (seconds), cumulative on output as Prometheus expects.
class Histogram {
public:
    static constexpr std::array<double, 14> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                       0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    void observe(Duration d);
    void render(std::string& out, const std::string& name, const std::string& help) const;

private:
    std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
    std::atomic<std::uint64_t> count_{0};
    std::atomic<std::int64_t> sum_ns_{0};
};

struct ServerMetrics {
    std::atomic<std::int64_t> connections_open{0};
    std::atomic<std::uint64_t> accepted_total{0};
    SessionCounters sessions;  // PINGs received, PINGs and PONGs sent, protocol errors: the sessions count them.
    std::atomic<std::uint64_t> accept_errors_total{0};
    std::atomic<std::uint64_t> broadcast_dropped_total{0};  // Broadcast frames a full queue refused.
    std::atomic<std::uint64_t> stalls_total{0};
    std::array<std::atomic<std::uint64_t>, kAllDisconnectReasons.size()> closed_total{};
    // Fleet presence on Redis (rendered only with presence_redis): copied
    // from the publisher's counters by its loop after each step.
    struct Presence {
        std::atomic<bool> enabled{false};
        std::atomic<std::uint64_t> redis_up{0};
        std::atomic<std::uint64_t> live{0};
        std::atomic<std::uint64_t> queued{0};
        std::atomic<std::uint64_t> commands_total{0};
        std::atomic<std::uint64_t> dropped_total{0};
        std::atomic<std::uint64_t> errors_total{0};
        std::atomic<std::uint64_t> fenced_out_total{0};
        std::atomic<std::uint64_t> reaped_total{0};
        std::atomic<std::uint64_t> reconnects_total{0};
    } presence;
    Histogram detection_latency;  // silence at the moment a peer was declared dead
    Histogram rtt;

    void count_closed(DisconnectReason reason) {
        closed_total[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
    }
    // `loop_lag_max` is the worst loop lag across loops.
    std::string prometheus_text(Duration loop_lag_max) const;
};

}  // namespace lifeline::runtime

namespace lifeline::runtime {

// Sums Prometheus text expositions sample by sample (same name and labels):
// the metrics of several worker processes as one server's. HELP/TYPE lines
// are kept once, in first-seen order; gauges are summed too (open
// connections add up), except those with _max in their name, which take the maximum.
std::string sum_prometheus_texts(const std::vector<std::string>& texts);

}  // namespace lifeline::runtime
