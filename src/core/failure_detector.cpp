#include "lifeline/engine/failure_detector.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace lifeline {

FixedTimeoutDetector::FixedTimeoutDetector(Duration timeout, Instant now) : timeout_(timeout), last_arrival_(now) {
    assert(timeout > Duration::zero());
}

void FixedTimeoutDetector::on_arrival(Instant now) { last_arrival_ = std::max(last_arrival_, now); }

double FixedTimeoutDetector::suspicion(Instant now) const {
    const Duration silence = now - last_arrival_;
    if (silence <= Duration::zero()) return 0.0;
    return static_cast<double>(silence.ns()) / static_cast<double>(timeout_.ns());
}

Result<void> PhiAccrualConfig::validate() const {
    if (!(threshold >= 1.0) || !std::isfinite(threshold))
        return Error{"phi accrual: threshold must be a finite number >= 1 (got " + std::to_string(threshold) + ")"};
    if (max_sample_size < 2)
        return Error{"phi accrual: max_sample_size must be >= 2 (got " + std::to_string(max_sample_size) + ")"};
    if (min_std_deviation <= Duration::zero()) return Error{"phi accrual: min_std_deviation must be > 0"};
    if (acceptable_pause < Duration::zero()) return Error{"phi accrual: acceptable_pause must be >= 0"};
    if (first_heartbeat_estimate <= Duration::zero()) return Error{"phi accrual: first_heartbeat_estimate must be > 0"};
    return {};
}

namespace {
double to_ms(Duration d) { return static_cast<double>(d.ns()) / 1e6; }

// Akka's logistic approximation of the normal CDF's upper tail (error < 0.0005,
// Bowling et al. 2009, "A logistic approximation to the cumulative normal
// distribution"): P(X > mean + y*sigma) ~= e / (1 + e), e = exp(-y (1.5976 + 0.070566 y^2)).
double phi_of(double elapsed_ms, double mean_ms, double std_ms) {
    const double y = (elapsed_ms - mean_ms) / std_ms;
    const double e = std::exp(-y * (1.5976 + 0.070566 * y * y));
    if (elapsed_ms > mean_ms) return -std::log10(e / (1.0 + e));
    return -std::log10(1.0 - 1.0 / (1.0 + e));
}

// Inverts phi_of: the y at which phi reaches `threshold`. With p = 10^-threshold
// and e = p / (1 - p), y solves 0.070566 y^3 + 1.5976 y + ln(e) = 0, a
// depressed cubic with one real root (Cardano).
double y_at_threshold(double threshold) {
    const double p = std::pow(10.0, -threshold);
    const double ln_e = std::log(p / (1.0 - p));
    const double a = 1.5976 / 0.070566;
    const double b = ln_e / 0.070566;
    const double disc = std::sqrt(b * b / 4.0 + a * a * a / 27.0);
    return std::cbrt(-b / 2.0 + disc) + std::cbrt(-b / 2.0 - disc);
}
}  // namespace

PhiAccrualDetector::PhiAccrualDetector(const PhiAccrualConfig& config, Instant now)
    : config_(config), last_arrival_(now) {
    assert(config.validate().ok());
    intervals_ms_.reserve(config.max_sample_size);
    // Seed with two samples of mean `estimate` and deviation estimate/4, as Akka does,
    // so the first real heartbeat is judged against a sensible prior.
    const double estimate = to_ms(config.first_heartbeat_estimate);
    add_interval(estimate - estimate / 4);
    add_interval(estimate + estimate / 4);
    conviction_time_ = compute_conviction_time();
}

void PhiAccrualDetector::add_interval(double interval_ms) {
    if (intervals_ms_.size() < config_.max_sample_size) {
        intervals_ms_.push_back(interval_ms);
    } else {
        const double old = intervals_ms_[next_slot_];
        sum_ms_ -= old;
        sum_squares_ms_ -= old * old;
        intervals_ms_[next_slot_] = interval_ms;
        next_slot_ = (next_slot_ + 1) % intervals_ms_.size();
    }
    sum_ms_ += interval_ms;
    sum_squares_ms_ += interval_ms * interval_ms;
}

void PhiAccrualDetector::on_arrival(Instant now) {
    if (now <= last_arrival_) return;
    add_interval(to_ms(now - last_arrival_));
    last_arrival_ = now;
    conviction_time_ = compute_conviction_time();
}

void PhiAccrualDetector::on_local_stall(Instant now) {
    if (now <= last_arrival_) return;
    last_arrival_ = now;
    conviction_time_ = compute_conviction_time();
}

Duration PhiAccrualDetector::mean() const {
    const double mean_ms = sum_ms_ / static_cast<double>(intervals_ms_.size());
    return Duration::nanoseconds(static_cast<std::int64_t>(mean_ms * 1e6));
}

Duration PhiAccrualDetector::std_deviation() const {
    const double n = static_cast<double>(intervals_ms_.size());
    const double mean_ms = sum_ms_ / n;
    const double variance = std::max(0.0, sum_squares_ms_ / n - mean_ms * mean_ms);
    const double std_ms = std::max(std::sqrt(variance), to_ms(config_.min_std_deviation));
    return Duration::nanoseconds(static_cast<std::int64_t>(std_ms * 1e6));
}

double PhiAccrualDetector::phi(Instant now) const {
    const double elapsed_ms = to_ms(now - last_arrival_);
    const double mean_ms = to_ms(mean() + config_.acceptable_pause);
    return phi_of(elapsed_ms, mean_ms, to_ms(std_deviation()));
}

Instant PhiAccrualDetector::compute_conviction_time() const {
    const double mean_ms = to_ms(mean() + config_.acceptable_pause);
    const double elapsed_ms = mean_ms + y_at_threshold(config_.threshold) * to_ms(std_deviation());
    // Round up to the microsecond so that phi(conviction_time()) >= threshold holds.
    return last_arrival_ + Duration::microseconds(static_cast<std::int64_t>(std::ceil(elapsed_ms * 1e3)) + 1);
}

}  // namespace lifeline
