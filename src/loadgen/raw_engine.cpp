// The lean load engine's loop and counters: one EventLoop, all connections
// in one array allocated up front (see raw_engine.hpp).
#include "loadgen/raw_engine.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lifeline::loadgen {

namespace raw {

// ---- RawEngine ----

RawEngine::RawEngine(const LoadOptions& options, net::Endpoint endpoint, std::vector<net::Endpoint> sources,
                     std::unique_ptr<EventLoop> loop, std::uint16_t keep_alive_s)
    : options_(options),
      endpoint_(endpoint),
      sources_(std::move(sources)),
      loop_(std::move(loop)),
      connections_(new RawConnection[static_cast<std::size_t>(options.connections)]),
      count_(static_cast<std::uint32_t>(options.connections)),
      keep_alive_s_(keep_alive_s) {
    for (std::uint32_t i = 0; i < count_; ++i) connections_[i].attach(*this, i);
}

RawEngine::~RawEngine() {
    for (std::uint32_t i = 0; i < count_; ++i) connections_[i].release();
}

Result<std::unique_ptr<LoadEngine>> RawEngine::create(const LoadOptions& options) {
    if (options.protocol != Protocol::echo && options.protocol != Protocol::mqtt)
        return Error{"the raw load engine speaks echo and mqtt only"};
    if (options.connections < 1 || options.connections > kMaxConnections)
        return Error{"connections per engine must be 1.." + std::to_string(kMaxConnections) + " (got " +
                     std::to_string(options.connections) + ")"};
    if (options.heartbeat <= Duration::zero()) return Error{"--heartbeat must be > 0"};
    if (!(options.ramp_per_second >= 0) || !std::isfinite(options.ramp_per_second))
        return Error{"ramp must be a finite number >= 0 connections per second"};
    // MQTT 3.1.1 section 3.1.2.10: keep alive is a 16-bit count of seconds.
    // Rounded up, so the server never expects PINGREQs faster than we send them.
    const std::int64_t keep_alive = std::max<std::int64_t>(1, (options.heartbeat.ns() + 999'999'999) / 1'000'000'000);
    if (options.protocol == Protocol::mqtt && keep_alive > 65535)
        return Error{"--heartbeat must be at most 65535 s for MQTT (keep-alive is 16 bits of seconds)"};
    Result<net::Endpoint> endpoint = net::parse_endpoint(options.server);
    if (!endpoint) return endpoint.error();
    std::vector<net::Endpoint> sources;
    for (const std::string& source : options.sources) {
        Result<net::Endpoint> e = net::parse_endpoint(source.find(':') == std::string::npos ? source + ":0" : source);
        if (!e) return e.error().with_context("source address");
        sources.push_back(*e);
    }
    runtime::EventLoopConfig loop_config;
    if (options.arrivals == Arrivals::uniform) loop_config.tick = kUniformTick;  // Each ping at its own instant.
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(loop_config);
    if (!loop) return loop.error();
    const auto keep_alive_s = static_cast<std::uint16_t>(std::min<std::int64_t>(keep_alive, 65535));
    return std::unique_ptr<LoadEngine>(
        new RawEngine(options, *endpoint, std::move(sources), std::move(*loop), keep_alive_s));
}

void RawEngine::run() {
    assert(!ran_ && "run() once per engine");
    ran_ = true;
    const Instant start = loop_->precise_now();
    std::uint64_t rng_state = options_.seed;
    for (std::uint32_t i = 0; i < count_; ++i) {
        // Clamped before the conversion: a ramp of 1e-12/s must not overflow the cast.
        const double delay_ns =
            options_.ramp_per_second > 0 ? std::min(1e9 * double(i) / options_.ramp_per_second, 1e18) : 0.0;
        // The first echo leaves at open, so the start's phase is the heartbeats' phase.
        const Duration jitter = start_jitter(options_.arrivals, options_.heartbeat, rng_state);
        connections_[i].start_at(start + Duration::nanoseconds(static_cast<std::int64_t>(delay_ns)) + jitter);
    }
    loop_->run();
}

void RawEngine::stop() {
    loop_->post([this] {
        for (std::uint32_t i = 0; i < count_; ++i) connections_[i].release();
        {
            std::lock_guard lock(mutex_);
            stats_.open = 0;  // Every open connection was just closed by us, and reports nothing.
        }
        loop_->stop();
    });
}

void RawEngine::silence(double fraction) {
    // The instant of the call, not of the loop's next turn: that is what "silence" means to the caller.
    const Instant at = clock_.now();
    fraction = std::clamp(fraction, 0.0, 1.0);
    loop_->post([this, at, fraction] {
        std::uint64_t silenced = 0;
        for (std::uint32_t i = 0; i < count_; ++i) {
            if (is_silenced(i, fraction) && connections_[i].silence(at)) ++silenced;
        }
        std::lock_guard lock(mutex_);
        stats_.silenced += silenced;
    });
}

LoadStats RawEngine::stats() const {
    std::lock_guard lock(mutex_);
    LoadStats s = stats_;
    s.round_trips = round_trips_.load(std::memory_order_relaxed);
    return s;
}

void RawEngine::on_round_trips(std::uint64_t n, Instant sent) {
    const std::int64_t rtt_ns = (loop_->now() - sent).ns();
    std::lock_guard lock(mutex_);
    // Counted under the lock, so a stats() snapshot has as many samples as round trips.
    round_trips_.fetch_add(n, std::memory_order_relaxed);
    for (std::uint64_t k = 0; k < n; ++k) stats_.round_trip_latency.record_ns(rtt_ns);
}

void RawEngine::on_opened() {
    std::lock_guard lock(mutex_);
    ++stats_.connected;
    ++stats_.open;
}

void RawEngine::on_connect_failure(const std::string& message) {
    std::lock_guard lock(mutex_);
    ++stats_.connect_failures;
    if (stats_.first_error.empty()) stats_.first_error = message;
}

void RawEngine::on_server_close(const RawConnection& connection, Instant seen) {
    std::lock_guard lock(mutex_);
    assert(stats_.open > 0);
    --stats_.open;
    if (!connection.silent()) {
        ++stats_.false_closes;
        return;
    }
    stats_.detect_after_silence_ns.push_back((seen - connection.silenced_at()).ns());
    stats_.detect_after_last_send_ns.push_back((seen - connection.last_send()).ns());
}

void RawEngine::on_protocol_error() {
    std::lock_guard lock(mutex_);
    assert(stats_.open > 0);
    --stats_.open;
}

void RawEngine::on_finished() {
    // Like the framed engine (lifeline::Client without reconnect): when every
    // connection has ended there is nothing left to drive, and run() returns.
    if (++finished_ == count_) loop_->stop();
}

}  // namespace raw

Result<std::unique_ptr<LoadEngine>> make_raw_engine(const LoadOptions& options) {
    return raw::RawEngine::create(options);
}

}  // namespace lifeline::loadgen
