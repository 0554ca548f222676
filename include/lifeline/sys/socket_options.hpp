// Kernel keepalive and TCP_USER_TIMEOUT on a socket of your own: apply a
// KeepalivePolicy (include/lifeline/keepalive.hpp) and read back what the
// kernel has in force. For programs with their own event loop; the runtime
// uses the same calls on every socket it accepts or connects.
//
//   auto policy = lifeline::KeepalivePolicy::parse("10s:2s:3", "auto");
//   auto in_force = lifeline::sys::apply_keepalive(fd, *policy);
//   if (!in_force) log(in_force.error().message);  // which option, which socket, why
//
// Threads: any; each call is a few getsockopt/setsockopt calls on `fd`.
// Errors: Errc::invalid_argument (the policy is out of range; nothing was
// set), Errc::refused_by_kernel (a setsockopt failed, with its errno, or the
// kernel kept another value than asked: the message names the option, the
// value asked and the one in force), Errc::system (getsockopt failed, or
// `fd` is not a TCP socket: EBADF, ENOTSOCK). Options set before a failure stay set.
// Linux is what is built and tested here; the option names that differ per
// platform live in one place in src/net/socket_options.cpp.
#pragma once

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline::sys {

// What the kernel has in force for a socket, read with getsockopt.
struct EffectiveKeepalive {
    bool enabled = false;   // SO_KEEPALIVE
    Duration idle;          // TCP_KEEPIDLE (the sysctl default unless overridden)
    Duration interval;      // TCP_KEEPINTVL
    int count = 0;          // TCP_KEEPCNT
    Duration user_timeout;  // TCP_USER_TIMEOUT (zero: off)

    Duration budget() const { return enabled ? idle + interval * count : Duration::infinite(); }
};

// Validates `policy` (never clamps), applies it, and returns the values read back.
// A disabled policy turns SO_KEEPALIVE off and leaves idle/interval/count alone.
Result<EffectiveKeepalive> apply_keepalive(int fd, const KeepalivePolicy& policy);

// Reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT.
Result<EffectiveKeepalive> read_keepalive(int fd);

// Sets TCP_USER_TIMEOUT alone (zero: off) and returns the value read back:
// how long sent data may stay unacknowledged before the kernel gives up on
// the connection (ETIMEDOUT). See docs/TUNING.md for choosing it.
Result<Duration> apply_user_timeout(int fd, Duration timeout);

}  // namespace lifeline::sys
