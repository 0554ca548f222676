// Kernel TCP keepalive and TCP_USER_TIMEOUT, as one per-socket policy.
//
// The kernel notices an idle dead peer after idle + interval * count
// (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). It never sends keepalive probes
// while sent data is unacknowledged, so a peer that vanishes mid-transfer is
// noticed only when retransmissions give up (about 15 minutes with the default
// tcp_retries2 = 15) unless TCP_USER_TIMEOUT (RFC 5482) bounds how long data
// may stay unacknowledged. The default here, user timeout `auto`, sets it to
// the keepalive budget, so both cases are noticed in the same time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// The kernel's accepted ranges (include/net/tcp.h: MAX_TCP_KEEPIDLE,
// MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). Values outside are refused, never clamped.
inline constexpr Duration kMaxKeepaliveIdle = Duration::seconds(32767);
inline constexpr Duration kMaxKeepaliveInterval = Duration::seconds(32767);
inline constexpr int kMaxKeepaliveCount = 127;

struct UserTimeout {
    enum class Mode : std::uint8_t {
        automatic,  // idle + interval * count: the keepalive budget.
        off,        // Leave TCP_USER_TIMEOUT at 0 (the kernel's retransmission limits apply).
        fixed,      // An explicit duration (whole milliseconds, > 0).
    };
    Mode mode = Mode::automatic;
    Duration value;  // For Mode::fixed.

    static UserTimeout automatic() { return {}; }
    static UserTimeout off() { return {Mode::off, Duration::zero()}; }
    static UserTimeout fixed(Duration d) { return {Mode::fixed, d}; }

    // "auto", "off" or a duration ("15s").
    static Result<UserTimeout> parse(std::string_view text);
    std::string to_string() const;
};

struct KeepalivePolicy {
    bool enabled = true;  // false: SO_KEEPALIVE off (user timeout may still apply).
    Duration idle = Duration::seconds(10);
    Duration interval = Duration::seconds(2);
    int count = 3;
    UserTimeout user_timeout;

    static KeepalivePolicy disabled() { return KeepalivePolicy{false, {}, {}, 0, UserTimeout::off()}; }

    // Checks the kernel's ranges: idle and interval whole seconds in 1..32767 s,
    // count 1..127, a fixed user timeout whole milliseconds in 1 ms..INT_MAX ms.
    // The error names the option and the allowed range.
    Result<void> validate() const;

    // Worst case for an idle dead peer: idle + interval * count (zero if disabled).
    Duration budget() const;
    // What TCP_USER_TIMEOUT should be set to (zero = leave the kernel's default).
    Duration user_timeout_value() const;

    // "10s:2s:3" (idle:interval:count) or "off"; the user timeout is separate.
    static Result<KeepalivePolicy> parse(std::string_view spec);
    // The two command-line flags together: --keepalive SPEC --user-timeout auto|off|DURATION.
    // `auto` with keepalive off means off (there is no budget to follow).
    static Result<KeepalivePolicy> parse(std::string_view spec, std::string_view user_timeout);
    // "10s:2s:3 user-timeout=auto(16s)" or "off".
    std::string to_string() const;
};

// The per-network-namespace sysctls under net.ipv4 that decide detection.
struct TcpKernelSettings {
    Duration keepalive_time = Duration::seconds(7200);  // tcp_keepalive_time
    Duration keepalive_intvl = Duration::seconds(75);   // tcp_keepalive_intvl
    int keepalive_probes = 9;                           // tcp_keepalive_probes
    int retries2 = 15;                                  // tcp_retries2
    int syn_retries = 6;                                // tcp_syn_retries
};

// Kernel constants (include/net/tcp.h).
inline constexpr Duration kTcpRtoMin = Duration::milliseconds(200);
inline constexpr Duration kTcpRtoMax = Duration::seconds(120);
inline constexpr Duration kTcpInitialRto = Duration::seconds(1);  // RFC 6298 (2.1); SYNs start here.

// An idle connection whose peer vanished: time + intvl * probes.
Duration idle_peer_detection(const TcpKernelSettings& s);

// A peer lost with data in flight: when retransmissions give up. The kernel
// (net/ipv4/tcp_timer.c, retransmits_timed_out / tcp_model_timeout) models it
// as exponential backoff from TCP_RTO_MIN, capped at TCP_RTO_MAX: with
// thresh = ilog2(RTO_MAX / RTO_MIN) = 9, the limit is (2^(r+1) - 1) * RTO_MIN
// for r <= thresh, else (2^(thresh+1) - 1) * RTO_MIN + (r - thresh) * RTO_MAX.
// retries2 = 15 gives 924.6 s.
Duration retransmission_give_up(int retries2);

// A connect() to a host that never answers: SYN retransmissions from a 1 s RTO,
// doubling, capped at TCP_RTO_MAX, then one more backoff before giving up
// (syn_retries = 6 gives 1+2+4+8+16+32+64 = 127 s).
Duration connect_give_up(int syn_retries);

}  // namespace lifeline
