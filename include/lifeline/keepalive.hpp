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
    // "10s:2s:3 user-timeout=auto(16s)" or "off".
    std::string to_string() const;
};

}  // namespace lifeline
