// Keepalive and TCP_USER_TIMEOUT on one socket: apply a KeepalivePolicy and
// read back what the kernel has in force. Every syscall is checked; errors say
// which option, which socket, and errno.
//
// The option names differ per platform (Linux: TCP_KEEPIDLE; macOS:
// TCP_KEEPALIVE for idle; Windows: SIO_KEEPALIVE_VALS); the mapping lives in
// one place in socket_options.cpp. Linux is what is built and tested here.
#pragma once

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline::net {

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

}  // namespace lifeline::net
