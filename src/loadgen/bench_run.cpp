#include "loadgen/bench_run.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <sys/prctl.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

namespace lifeline::loadgen {

namespace {

std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Sleeps until an absolute CLOCK_MONOTONIC instant: the phases of every shard
// line up on the one system-wide clock.
void sleep_until(std::int64_t deadline_ns) {
    timespec ts{static_cast<time_t>(deadline_ns / 1'000'000'000), static_cast<long>(deadline_ns % 1'000'000'000)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
}

LoadStats sum(const std::vector<std::unique_ptr<LoadEngine>>& engines) {
    BenchResult total;
    for (const auto& e : engines) merge(total, BenchResult{e->stats(), {}, 0});
    return total.stats;
}

}  // namespace

Result<BenchResult> run_shard(const BenchPlan& plan) {
    const int threads = std::max(1, plan.threads);
    std::vector<std::unique_ptr<LoadEngine>> engines;
    BenchResult result;
    for (int t = 0; t < threads; ++t) {
        LoadOptions o = plan.load;
        o.connections = plan.load.connections / threads + (t < plan.load.connections % threads ? 1 : 0);
        o.ramp_per_second = plan.load.ramp_per_second / threads;
        o.seed = plan.load.seed * 1000 + static_cast<std::uint64_t>(t);
        // Rotate the sources so the threads do not all start on the same one.
        if (!o.sources.empty())
            std::rotate(o.sources.begin(), o.sources.begin() + (t % o.sources.size()), o.sources.end());
        if (o.connections == 0) continue;
        Result<std::unique_ptr<LoadEngine>> e = make_engine(o);
        if (!e) return e.error();
        engines.push_back(std::move(*e));
    }
    sleep_until(plan.epoch_ns);
    std::vector<std::thread> runners;
    const bool precise = plan.load.arrivals == Arrivals::uniform;
    for (auto& e : engines) {
        runners.emplace_back([&e, precise] {
            // The kernel may defer a timed wake-up by the thread's timer slack
            // (50 us by default): more than the uniform pattern's tick.
            if (precise) ::prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
            e->run();
        });
    }

    const std::int64_t ramp_end = plan.epoch_ns + plan.ramp.ns();
    const std::int64_t silence_at = ramp_end + plan.silence_after.ns();
    const std::int64_t end = ramp_end + plan.hold.ns();
    bool silenced = plan.silence_fraction <= 0;
    bool hold_started = false;
    std::uint64_t trips_at_hold = 0;
    LatencyHistogram latency_at_hold;
    std::int64_t hold_start_ns = 0;
    // Wake once a second for progress, and at each phase boundary.
    for (std::int64_t now = monotonic_ns(); now < end; now = monotonic_ns()) {
        if (!hold_started && now >= ramp_end) {
            hold_started = true;
            hold_start_ns = now;
            const LoadStats at_hold = sum(engines);
            trips_at_hold = at_hold.round_trips;
            latency_at_hold = at_hold.round_trip_latency;
        }
        if (!silenced && now >= silence_at) {
            silenced = true;
            for (auto& e : engines) e->silence(plan.silence_fraction);
        }
        if (plan.progress) {
            const LoadStats s = sum(engines);
            plan.progress(fmt::format("connected {}/{}, open {}, failures {}, round trips {}{}", s.connected,
                                      plan.load.connections, s.open, s.connect_failures, s.round_trips,
                                      s.first_error.empty() ? "" : " (first error: " + s.first_error + ")"));
        }
        std::int64_t next = std::min(end, now + 1'000'000'000);
        if (!hold_started) next = std::min(next, ramp_end);
        if (!silenced) next = std::min(next, silence_at);
        sleep_until(next);
    }
    const LoadStats before_stop = sum(engines);
    const std::int64_t hold_end_ns = monotonic_ns();
    for (auto& e : engines) e->stop();
    for (auto& r : runners) r.join();
    result.stats = sum(engines);
    // Counted before stop(): the closes our own stop causes are not the server's doing.
    result.stats.false_closes = before_stop.false_closes;
    result.stats.round_trips = before_stop.round_trips;
    result.round_trips_in_hold = before_stop.round_trips - trips_at_hold;
    // Latency over the hold only: the ramp's accept backlog is not the steady state.
    result.stats.round_trip_latency = before_stop.round_trip_latency;
    result.stats.round_trip_latency.subtract(latency_at_hold);
    result.measured = Duration::nanoseconds(hold_started ? hold_end_ns - hold_start_ns : 0);
    return result;
}

void merge(BenchResult& into, const BenchResult& other) {
    LoadStats& a = into.stats;
    const LoadStats& b = other.stats;
    a.connected += b.connected;
    a.connect_failures += b.connect_failures;
    a.open += b.open;
    a.round_trips += b.round_trips;
    a.silenced += b.silenced;
    a.false_closes += b.false_closes;
    a.detect_after_silence_ns.insert(a.detect_after_silence_ns.end(), b.detect_after_silence_ns.begin(),
                                     b.detect_after_silence_ns.end());
    a.detect_after_last_send_ns.insert(a.detect_after_last_send_ns.end(), b.detect_after_last_send_ns.begin(),
                                       b.detect_after_last_send_ns.end());
    if (a.first_error.empty()) a.first_error = b.first_error;
    a.drops += b.drops;
    a.reconnected += b.reconnected;
    if (b.first_drop_ns != 0 && (a.first_drop_ns == 0 || b.first_drop_ns < a.first_drop_ns))
        a.first_drop_ns = b.first_drop_ns;
    a.last_reconnect_ns = std::max(a.last_reconnect_ns, b.last_reconnect_ns);
    a.round_trip_latency.add(b.round_trip_latency);
    into.round_trips_in_hold += other.round_trips_in_hold;
    into.measured = std::max(into.measured, other.measured);
}

nlohmann::json to_json(const BenchResult& r) {
    const LoadStats& s = r.stats;
    return nlohmann::json{{"connected", s.connected},
                          {"connect_failures", s.connect_failures},
                          {"open", s.open},
                          {"round_trips", s.round_trips},
                          {"round_trips_in_hold", r.round_trips_in_hold},
                          {"hold_ns", r.measured.ns()},
                          {"silenced", s.silenced},
                          {"false_closes", s.false_closes},
                          {"detect_after_silence_ns", s.detect_after_silence_ns},
                          {"detect_after_last_send_ns", s.detect_after_last_send_ns},
                          {"first_error", s.first_error},
                          {"drops", s.drops},
                          {"reconnected", s.reconnected},
                          {"first_drop_ns", s.first_drop_ns},
                          {"last_reconnect_ns", s.last_reconnect_ns},
                          {"round_trip_latency", s.round_trip_latency.to_json()}};
}

Result<BenchResult> bench_result_from_json(const nlohmann::json& j) {
    try {
        BenchResult r;
        LoadStats& s = r.stats;
        s.connected = j.at("connected").get<std::uint64_t>();
        s.connect_failures = j.at("connect_failures").get<std::uint64_t>();
        s.open = j.at("open").get<std::uint64_t>();
        s.round_trips = j.at("round_trips").get<std::uint64_t>();
        s.silenced = j.at("silenced").get<std::uint64_t>();
        s.false_closes = j.at("false_closes").get<std::uint64_t>();
        s.detect_after_silence_ns = j.at("detect_after_silence_ns").get<std::vector<std::int64_t>>();
        s.detect_after_last_send_ns = j.at("detect_after_last_send_ns").get<std::vector<std::int64_t>>();
        s.first_error = j.at("first_error").get<std::string>();
        s.drops = j.at("drops").get<std::uint64_t>();
        s.reconnected = j.at("reconnected").get<std::uint64_t>();
        s.first_drop_ns = j.at("first_drop_ns").get<std::int64_t>();
        s.last_reconnect_ns = j.at("last_reconnect_ns").get<std::int64_t>();
        Result<LatencyHistogram> latency = LatencyHistogram::from_json(j.at("round_trip_latency"));
        if (!latency) return latency.error();
        s.round_trip_latency = *latency;
        r.round_trips_in_hold = j.at("round_trips_in_hold").get<std::uint64_t>();
        r.measured = Duration::nanoseconds(j.at("hold_ns").get<std::int64_t>());
        return r;
    } catch (const nlohmann::json::exception& e) {
        return Error{std::string("bench shard result: ") + e.what()};
    }
}

std::int64_t quantile(std::vector<std::int64_t>& samples, double q) {
    if (samples.empty()) return 0;
    std::sort(samples.begin(), samples.end());
    // Nearest rank: the smallest sample with at least q of all at or below it.
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples.size())));
    return samples[std::min(samples.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Result<std::vector<std::string>> expand_address_range(const std::string& range) {
    const auto dash = range.find('-');
    const std::string first = range.substr(0, dash);
    const std::string last = dash == std::string::npos ? first : range.substr(dash + 1);
    in_addr a{}, b{};
    if (::inet_pton(AF_INET, first.c_str(), &a) != 1 || ::inet_pton(AF_INET, last.c_str(), &b) != 1)
        return Error{"--sources: expected A.B.C.D or A.B.C.D-E.F.G.H, got '" + range + "'"};
    const std::uint32_t lo = ntohl(a.s_addr), hi = ntohl(b.s_addr);
    if (hi < lo || hi - lo >= 65536) return Error{"--sources: range '" + range + "' is empty or over 65536 addresses"};
    std::vector<std::string> out;
    for (std::uint32_t x = lo;; ++x) {
        in_addr addr{htonl(x)};
        char text[INET_ADDRSTRLEN];
        out.emplace_back(::inet_ntop(AF_INET, &addr, text, sizeof(text)));
        if (x == hi) break;
    }
    return out;
}

}  // namespace lifeline::loadgen
