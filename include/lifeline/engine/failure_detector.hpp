// Failure detectors: from the history of arrivals from a peer, decide when its
// silence means it is gone.
//
// Two implementations, chosen per connection:
//  - FixedTimeoutDetector (the default): the peer is dead once nothing at all
//    has arrived for `timeout`. 24 bytes, no history.
//  - PhiAccrualDetector (Hayashibara, Defago, Yared, Katayama, "The phi accrual
//    failure detector", SRDS 2004; parameters as Akka and Cassandra use them):
//    learns the distribution of inter-arrival times and reports
//    phi = -log10(P(an arrival this late or later)); the peer is convicted
//    when phi reaches a threshold. Costs a sample window per connection.
//
// Both report a suspicion level comparable to their threshold(), and the
// instant at which they will convict if nothing more arrives, so the caller
// needs one timer, not polling.
#pragma once

#include <cstdint>
#include <vector>

#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

class FailureDetector {
public:
    virtual ~FailureDetector() = default;

    // Something (any byte) arrived from the peer at `now`.
    virtual void on_arrival(Instant now) = 0;
    virtual Instant last_arrival() const = 0;
    // Our own process was stalled until `now`: restart the silence clock at
    // `now` without learning anything from the gap (it was ours, not the peer's).
    virtual void on_local_stall(Instant now) = 0;
    // How suspect the peer is at `now`; >= threshold() means convicted.
    virtual double suspicion(Instant now) const = 0;
    virtual double threshold() const = 0;
    // The earliest instant at which suspicion reaches threshold() if nothing
    // else arrives; it only moves later as arrivals come in.
    virtual Instant conviction_time() const = 0;

    bool convicts(Instant now) const { return now >= conviction_time(); }
};

class FixedTimeoutDetector final : public FailureDetector {
public:
    FixedTimeoutDetector(Duration timeout, Instant now);

    void on_arrival(Instant now) override;
    Instant last_arrival() const override { return last_arrival_; }
    void on_local_stall(Instant now) override { on_arrival(now); }
    // Silence as a fraction of the timeout: 1.0 convicts.
    double suspicion(Instant now) const override;
    double threshold() const override { return 1.0; }
    Instant conviction_time() const override { return last_arrival_ + timeout_; }

    Duration timeout() const { return timeout_; }

private:
    Duration timeout_;
    Instant last_arrival_;
};

struct PhiAccrualConfig {
    double threshold = 8.0;               // Akka's default; Cassandra uses 8 too.
    std::uint32_t max_sample_size = 100;  // Inter-arrival samples kept (ring buffer).
    Duration min_std_deviation = Duration::milliseconds(100);
    Duration acceptable_pause = Duration::zero();              // Added to the mean: tolerated extra silence.
    Duration first_heartbeat_estimate = Duration::seconds(1);  // Seeds the history (Akka does the same).

    // Checks threshold >= 1, sample size >= 2, positive estimates.
    Result<void> validate() const;
};

class PhiAccrualDetector final : public FailureDetector {
public:
    // `config` must have passed validate().
    PhiAccrualDetector(const PhiAccrualConfig& config, Instant now);

    void on_arrival(Instant now) override;
    Instant last_arrival() const override { return last_arrival_; }
    void on_local_stall(Instant now) override;
    double suspicion(Instant now) const override { return phi(now); }
    double threshold() const override { return config_.threshold; }
    Instant conviction_time() const override { return conviction_time_; }

    double phi(Instant now) const;
    Duration mean() const;
    Duration std_deviation() const;
    std::size_t samples() const { return intervals_ms_.size(); }

private:
    void add_interval(double interval_ms);
    Instant compute_conviction_time() const;

    PhiAccrualConfig config_;
    std::vector<double> intervals_ms_;  // Ring buffer of at most max_sample_size.
    std::size_t next_slot_ = 0;
    double sum_ms_ = 0;
    double sum_squares_ms_ = 0;
    Instant last_arrival_;
    Instant conviction_time_;
};

}  // namespace lifeline
