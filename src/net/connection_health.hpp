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

// The kernel's own evidence that an established connection's peer is gone
// (`lifeline reap`): nothing acknowledged for at least `dead_for`
// (tcpi_last_ack_recv) while either sent data stays unacknowledged and is being
// retransmitted with backoff (tcpi_unacked, tcpi_retransmits/tcpi_backoff), or
// keepalive probes go unanswered (tcpi_probes; any ACK resets it). A peer that
// is alive but slow (zero window, its window probes answered) is no evidence.
struct DeathEvidence {
    Verdict kind = Verdict::retransmitting;  // retransmitting or probing
    Duration silent_for;                     // since the last ACK
    std::string description;                 // "4 segments unacked, 5 retransmissions (backoff 5)"
};
std::optional<DeathEvidence> death_evidence(const DiagSocket& s, Duration dead_for);

}  // namespace lifeline::net
