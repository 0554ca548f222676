// A verdict on one TCP connection from the kernel's view of it: is anything
// probing or retransmitting, and how long until the kernel gives up? Used by
// `lifeline inspect` and by anything that wants the same judgement.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "lifeline/keepalive.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "lifeline/time.hpp"
#include "net/sock_diag.hpp"

namespace lifeline::net {

enum class Verdict : std::uint8_t {
    healthy,         // Nothing outstanding that the peer failed to answer.
    probing,         // Keepalive probes sent and unanswered.
    retransmitting,  // Sent data unacknowledged and being retransmitted.
    zero_window,     // The peer advertises a zero window: it stopped reading.
    unprotected,     // No keepalive and no user timeout: a dead idle peer is never noticed.
};
std::string_view to_string(Verdict verdict);

struct KeepaliveView {
    sys::EffectiveKeepalive values;
    // True when the values were not read from the socket (no pidfd_getfd):
    // `enabled` is then inferred from the armed timer, the timings are the
    // sysctl defaults, and the user timeout is unknown (zero).
    bool inferred = false;
};

struct HealthAssessment {
    Verdict verdict = Verdict::healthy;
    // Until the kernel gives up on the peer if nothing changes; infinite when it never will.
    Duration time_left = Duration::infinite();
    bool time_left_estimated = false;  // Retransmission and user-timeout clocks are not exposed exactly.
};

// What is known of a socket's keepalive: read through its owner when possible, else inferred.
KeepaliveView keepalive_view(const DiagSocket& s, const std::optional<sys::EffectiveKeepalive>& read,
                             const TcpKernelSettings& sysctls);

HealthAssessment assess(const DiagSocket& s, const KeepaliveView& keepalive, const TcpKernelSettings& sysctls);

}  // namespace lifeline::net
