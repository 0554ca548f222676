// Instants and durations for lifeline.
//
// Both are signed 64-bit nanosecond counts wrapped in distinct types, so a
// deadline cannot be passed where a timeout is expected and no code ever does
// arithmetic on bare `double` seconds. Arithmetic saturates instead of
// overflowing: `Instant + Duration::infinite()` is a deadline that never comes,
// which is exactly what "no deadline" should mean. `Instant::unset()` is an
// explicit "never happened" value (ngtcp2 uses UINT64_MAX the same way).
//
// Instants come from a Clock (see src/core/clock.hpp). The core never reads a
// clock itself; every entry point takes `now`.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "lifeline/result.hpp"

namespace lifeline {

namespace detail {
inline constexpr std::int64_t kMaxNs = std::numeric_limits<std::int64_t>::max();
inline constexpr std::int64_t kMinNs = std::numeric_limits<std::int64_t>::min();

constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
    std::int64_t out = 0;
    if (__builtin_add_overflow(a, b, &out)) return b > 0 ? kMaxNs : kMinNs;
    return out;
}
constexpr std::int64_t saturating_sub(std::int64_t a, std::int64_t b) {
    std::int64_t out = 0;
    if (__builtin_sub_overflow(a, b, &out)) return b < 0 ? kMaxNs : kMinNs;
    return out;
}
constexpr std::int64_t saturating_mul(std::int64_t a, std::int64_t b) {
    std::int64_t out = 0;
    if (__builtin_mul_overflow(a, b, &out)) return (a < 0) == (b < 0) ? kMaxNs : kMinNs;
    return out;
}
}  // namespace detail

// A span of time with nanosecond resolution. Saturates at +/- infinite().
class Duration {
public:
    constexpr Duration() = default;

    static constexpr Duration nanoseconds(std::int64_t n) { return Duration(n); }
    static constexpr Duration microseconds(std::int64_t n) { return Duration(detail::saturating_mul(n, 1'000)); }
    static constexpr Duration milliseconds(std::int64_t n) { return Duration(detail::saturating_mul(n, 1'000'000)); }
    static constexpr Duration seconds(std::int64_t n) { return Duration(detail::saturating_mul(n, 1'000'000'000)); }
    static constexpr Duration minutes(std::int64_t n) { return seconds(detail::saturating_mul(n, 60)); }
    static constexpr Duration hours(std::int64_t n) { return seconds(detail::saturating_mul(n, 3600)); }
    static constexpr Duration zero() { return Duration(0); }
    static constexpr Duration infinite() { return Duration(detail::kMaxNs); }

    template <class Rep, class Period>
    static constexpr Duration from_chrono(std::chrono::duration<Rep, Period> d) {
        return Duration(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    }

    constexpr std::int64_t ns() const { return ns_; }
    constexpr std::int64_t us() const { return ns_ / 1'000; }
    constexpr std::int64_t ms() const { return ns_ / 1'000'000; }
    constexpr double seconds_f() const { return static_cast<double>(ns_) / 1e9; }
    constexpr double ms_f() const { return static_cast<double>(ns_) / 1e6; }
    constexpr bool is_infinite() const { return ns_ == detail::kMaxNs; }

    constexpr Duration operator+(Duration o) const { return Duration(detail::saturating_add(ns_, o.ns_)); }
    constexpr Duration operator-(Duration o) const { return Duration(detail::saturating_sub(ns_, o.ns_)); }
    constexpr Duration operator*(std::int64_t k) const { return Duration(detail::saturating_mul(ns_, k)); }
    constexpr Duration operator/(std::int64_t k) const { return Duration(ns_ / k); }
    constexpr std::int64_t operator/(Duration o) const { return ns_ / o.ns_; }
    constexpr Duration& operator+=(Duration o) { return *this = *this + o; }
    constexpr Duration& operator-=(Duration o) { return *this = *this - o; }
    constexpr auto operator<=>(const Duration&) const = default;

private:
    constexpr explicit Duration(std::int64_t ns) : ns_(ns) {}
    std::int64_t ns_ = 0;
};

// A point on one clock's timeline, in nanoseconds since that clock's epoch.
// Instants from different clocks must not be mixed.
class Instant {
public:
    // The default is unset, so a forgotten initialisation is visible.
    constexpr Instant() = default;

    static constexpr Instant from_ns(std::int64_t ns) { return Instant(ns); }
    static constexpr Instant unset() { return Instant(); }
    // A deadline that never comes; compares later than every other set Instant.
    static constexpr Instant never() { return Instant(detail::kMaxNs); }

    constexpr bool is_set() const { return ns_ != kUnset; }
    constexpr bool is_never() const { return ns_ == detail::kMaxNs; }
    constexpr std::int64_t ns_since_epoch() const { return ns_; }

    constexpr Instant operator+(Duration d) const { return Instant(detail::saturating_add(ns_, d.ns())); }
    constexpr Instant operator-(Duration d) const { return Instant(detail::saturating_sub(ns_, d.ns())); }
    constexpr Duration operator-(Instant o) const { return Duration::nanoseconds(detail::saturating_sub(ns_, o.ns_)); }
    constexpr Instant& operator+=(Duration d) { return *this = *this + d; }
    constexpr auto operator<=>(const Instant&) const = default;

private:
    static constexpr std::int64_t kUnset = detail::kMinNs;
    constexpr explicit Instant(std::int64_t ns) : ns_(ns) {}
    std::int64_t ns_ = kUnset;
};

constexpr Instant earliest(Instant a, Instant b) { return a < b ? a : b; }
constexpr Duration shortest(Duration a, Duration b) { return a < b ? a : b; }

// "1.5s", "250ms", "2h", "inf": for logs and messages.
std::string to_string(Duration d);

// For people: "2h11m15s", "15m24.6s", "250ms", "never" for infinite.
std::string to_human(Duration d);

// Parses a non-negative duration: a decimal number followed by a unit,
// `ns`, `us`, `ms`, `s`, `m` or `h` ("250ms", "1.5s", "2h"); a bare "0" is zero.
// Errors name the text and what was expected.
Result<Duration> parse_duration(std::string_view text);

}  // namespace lifeline
