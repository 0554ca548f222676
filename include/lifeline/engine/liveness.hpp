// The per-connection liveness state machine of the heartbeat protocol.
//
// Sans-IO: it never sends anything itself. The runtime (or the simulator)
// tells it what happened, with the time it happened, and it answers with what
// to do and when to call again:
//
//   on_bytes_received(now)  any byte from the peer, even part of a frame: a large
//                           frame still arriving keeps its sender alive.
//   on_bytes_sent(now)      we wrote something: a busy sender needs no PINGs.
//   on_pong(now, pong)      a PONG arrived; yields an RTT sample if it answers
//                           our latest PING.
//   on_timer(now)           the connection's one timer fired: returns the action
//                           (send a PING, declare the peer dead, or nothing) and
//                           the next deadline.
//
// PINGs are answered by the runtime at once with a PONG carrying the same 16
// bytes (docs/PROTOCOL.md); that needs no state here beyond on_bytes_sent().
//
// Lazy re-arm: traffic only stores timestamps. The deadline returned by
// on_timer() is never later than the true next event, because traffic only
// pushes events later; when the timer fires, on_timer() re-checks and returns
// the real next deadline. A busy connection never touches the timer wheel.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/failure_detector.hpp"
#include "lifeline/engine/rtt_estimator.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

struct LivenessConfig {
    // If sends_pings: send a PING after this long without sending anything, or
    // without hearing anything and without having asked (see next_ping_time()).
    Duration interval = Duration::seconds(1);
    // Whether this side initiates heartbeats. Clients do; a server may.
    bool sends_pings = true;

    // interval must be 1 ms..49 days when sends_pings (kept in whole milliseconds,
    // the protocol's unit).
    Result<void> validate() const;
};

enum class LivenessAction : std::uint8_t {
    none,          // Nothing to do now; call on_timer() again at next_deadline.
    send_ping,     // Send `ping` now.
    declare_dead,  // The peer is gone: close with `reason`. The machine is finished.
};

struct LivenessStep {
    LivenessAction action = LivenessAction::none;
    Ping ping{};                                                    // For send_ping.
    DisconnectReason reason = DisconnectReason::heartbeat_timeout;  // For declare_dead.
    Instant next_deadline = Instant::never();                       // never() once dead.
};

class LivenessMachine {
public:
    // `detector` decides when silence means death; it must outlive the machine.
    LivenessMachine(const LivenessConfig& config, FailureDetector& detector, Instant now);
    // With a fixed timeout of its own (FixedTimeoutDetector's rule: dead once
    // nothing has arrived for `timeout`, > 0, infinite for never), kept
    // inside: no detector object, no pointer to it, no virtual calls. 16
    // bytes less for every session that uses it (docs/BENCHMARKS.md).
    LivenessMachine(const LivenessConfig& config, Duration timeout, Instant now);

    void on_bytes_received(Instant now);
    void on_bytes_sent(Instant now);
    // Returns the RTT sample when `pong` answers the latest PING we sent.
    std::optional<Duration> on_pong(Instant now, const Pong& pong);
    LivenessStep on_timer(Instant now);
    // Our own process was stalled (a long callback, SIGSTOP, suspend) until
    // `now`: silence that accrued meanwhile is not the peer's fault, so the
    // peer gets a fresh grace period instead of a conviction.
    void on_local_stall(Instant now);

    // When on_timer() next has something to do (never() once dead).
    Instant next_deadline() const;
    bool dead() const { return dead_; }
    Instant last_received() const { return external_ ? detector_->last_arrival() : last_arrival_; }
    // When we last sent anything (a machine that pings; never() for one that does not).
    Instant last_sent() const { return pinging_ ? pinging_->last_sent : Instant::never(); }
    double suspicion(Instant now) const;
    // The fixed timeout of its own; infinite() with a detector of the caller's.
    Duration timeout() const { return external_ ? Duration::infinite() : timeout_; }
    // RTT samples come from PONGs to our PINGs: none for a machine that does not ping.
    const RttEstimator& rtt() const;
    std::uint64_t pings_sent() const { return pinging_ ? pinging_->next_ping_seq - 1 : 0; }
    // The heartbeat interval it was made with (the granted contract).
    Duration interval() const { return Duration::milliseconds(interval_ms_); }

private:
    Instant next_ping_time() const;
    Instant conviction_time() const { return external_ ? detector_->conviction_time() : last_arrival_ + timeout_; }

    // What only a side that pings needs (a client; a server with
    // server_pings or over WebSocket), on the heap: a server that does not
    // ping (the default) holds 32 bytes here per connection instead of 56.
    struct Pinging {
        Instant last_sent;
        Instant last_ping_at;  // When the latest PING went out.
        RttEstimator rtt;
        // 32 bits: at one PING a second that lasts 136 years; the wire carries 64.
        std::uint32_t next_ping_seq = 1;
        bool awaiting_pong = false;  // The latest PING has not been answered yet.
    };

    // Laid out for size: an idle connection holds one of these (its
    // detector included). The caller's detector (external_), or the state
    // of a fixed timeout of its own.
    union {
        FailureDetector* detector_;
        Duration timeout_;
    };
    Instant last_arrival_;              // Own timeout only.
    std::unique_ptr<Pinging> pinging_;  // Set exactly when the config says sends_pings.
    std::uint32_t interval_ms_;
    bool dead_ = false;
    bool external_;
};

}  // namespace lifeline
