#include "lifeline/engine/liveness.hpp"

#include <algorithm>
#include <cassert>

namespace lifeline {

Result<void> LivenessConfig::validate() const {
    if (sends_pings && (interval < Duration::milliseconds(1) || interval.ms() > UINT32_MAX))
        return Error{"liveness: heartbeat interval must be 1ms..49 days (got " + to_string(interval) + ")"};
    return {};
}

LivenessMachine::LivenessMachine(const LivenessConfig& config, FailureDetector& detector, Instant now)
    : detector_(&detector),
      // Kept even when this side does not ping: it is the contract (interval()).
      interval_ms_(static_cast<std::uint32_t>(std::clamp<std::int64_t>(config.interval.ms(), 0, UINT32_MAX))),
      external_(true) {
    assert(config.validate().ok());
    if (config.sends_pings) pinging_ = std::make_unique<Pinging>(Pinging{now, now});
}

LivenessMachine::LivenessMachine(const LivenessConfig& config, Duration timeout, Instant now)
    : timeout_(timeout),
      last_arrival_(now),
      interval_ms_(static_cast<std::uint32_t>(std::clamp<std::int64_t>(config.interval.ms(), 0, UINT32_MAX))),
      external_(false) {
    assert(config.validate().ok());
    assert(timeout > Duration::zero());
    if (config.sends_pings) pinging_ = std::make_unique<Pinging>(Pinging{now, now});
}

const RttEstimator& LivenessMachine::rtt() const {
    static const RttEstimator kNoSamples;
    return pinging_ ? pinging_->rtt : kNoSamples;
}

void LivenessMachine::on_bytes_received(Instant now) {
    if (external_) {
        detector_->on_arrival(now);
    } else {
        last_arrival_ = std::max(last_arrival_, now);
    }
}

// FixedTimeoutDetector::suspicion(), for a timeout of its own.
double LivenessMachine::suspicion(Instant now) const {
    if (external_) return detector_->suspicion(now);
    const Duration silence = now - last_arrival_;
    if (silence <= Duration::zero()) return 0.0;
    return static_cast<double>(silence.ns()) / static_cast<double>(timeout_.ns());
}

void LivenessMachine::on_bytes_sent(Instant now) {
    if (pinging_) pinging_->last_sent = std::max(pinging_->last_sent, now);
}

std::optional<Duration> LivenessMachine::on_pong(Instant now, const Pong& pong) {
    // Only our latest PING yields a sample, timed by our own record of when it
    // left: the peer echoes sent_at, but nothing forces it to echo it honestly.
    if (!pinging_) return std::nullopt;
    Pinging& p = *pinging_;
    if (!p.awaiting_pong || pong.seq != p.next_ping_seq - 1u) return std::nullopt;
    const Duration sample = now - p.last_ping_at;
    p.awaiting_pong = false;
    if (sample < Duration::zero()) return std::nullopt;
    p.rtt.on_sample(sample);
    return sample;
}

// Two reasons to PING, at most one PING per interval for each:
//  - we have sent nothing for `interval`: the peer needs to hear from us;
//  - we have heard nothing for `interval` and have not asked since: we need to
//    hear from the peer. Without this, a client that only uploads would never
//    provoke a PONG and would convict a healthy server.
// A connection busy in both directions sends no PINGs at all.
Instant LivenessMachine::next_ping_time() const {
    if (!pinging_) return Instant::never();
    const Duration interval = Duration::milliseconds(interval_ms_);
    const Instant quiet_due = pinging_->last_sent + interval;
    const Instant deaf_due = std::max(last_received(), pinging_->last_ping_at) + interval;
    return earliest(quiet_due, deaf_due);
}

void LivenessMachine::on_local_stall(Instant now) {
    if (external_) {
        detector_->on_local_stall(now);
    } else {
        on_bytes_received(now);  // A fixed timeout restarts its silence clock; there is nothing to learn.
    }
}

Instant LivenessMachine::next_deadline() const {
    if (dead_) return Instant::never();
    return earliest(conviction_time(), next_ping_time());
}

LivenessStep LivenessMachine::on_timer(Instant now) {
    LivenessStep step;
    if (dead_) return step;
    if (now >= conviction_time()) {
        dead_ = true;
        step.action = LivenessAction::declare_dead;
        step.reason = DisconnectReason::heartbeat_timeout;
        return step;
    }
    if (now >= next_ping_time()) {  // Never without pinging_.
        Pinging& p = *pinging_;
        step.action = LivenessAction::send_ping;
        step.ping = Ping{p.next_ping_seq++, static_cast<std::uint64_t>(now.ns_since_epoch())};
        p.awaiting_pong = true;
        p.last_ping_at = now;
        on_bytes_sent(now);
    }
    step.next_deadline = next_deadline();
    return step;
}

}  // namespace lifeline
