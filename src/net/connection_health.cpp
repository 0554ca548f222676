#include "net/connection_health.hpp"

#include <algorithm>

namespace lifeline::net {

namespace {
Duration non_negative(Duration d) { return std::max(d, Duration::zero()); }
}  // namespace

std::string_view to_string(Verdict verdict) {
    switch (verdict) {
        case Verdict::healthy:
            return "healthy";
        case Verdict::probing:
            return "probing";
        case Verdict::retransmitting:
            return "retransmitting";
        case Verdict::zero_window:
            return "zero-window";
        case Verdict::unprotected:
            return "unprotected";
    }
    return "unknown";
}

KeepaliveView keepalive_view(const DiagSocket& s, const std::optional<sys::EffectiveKeepalive>& read,
                             const TcpKernelSettings& sysctls) {
    if (read) return {*read, false};
    KeepaliveView v;
    v.inferred = true;
    // An established socket with nothing in flight arms the keepalive timer
    // only when SO_KEEPALIVE is on. With data in flight the retransmit timer
    // hides it, so "off" may be wrong there; it is marked inferred.
    v.values.enabled = s.timer == SocketTimer::keepalive;
    v.values.idle = sysctls.keepalive_time;
    v.values.interval = sysctls.keepalive_intvl;
    v.values.count = sysctls.keepalive_probes;
    return v;
}

HealthAssessment assess(const DiagSocket& s, const KeepaliveView& keepalive, const TcpKernelSettings& sysctls) {
    HealthAssessment a;
    const sys::EffectiveKeepalive& k = keepalive.values;
    const bool has_user_timeout = k.user_timeout > Duration::zero();
    const sys::TcpInfo info = s.info.value_or(sys::TcpInfo{});
    switch (s.timer) {
        case SocketTimer::retransmit: {
            const bool stuck = s.timer_retransmits > 0 || info.retransmits > 0;
            a.verdict = stuck ? Verdict::retransmitting : Verdict::healthy;
            // The kernel counts from the first retransmission, which it does
            // not export; the last ACK received is the closest visible clock.
            const Duration limit = has_user_timeout ? k.user_timeout : retransmission_give_up(sysctls.retries2);
            a.time_left = non_negative(limit - info.last_ack_received);
            a.time_left_estimated = true;
            return a;
        }
        case SocketTimer::zero_window_probe:
            a.verdict = Verdict::zero_window;
            if (has_user_timeout) {
                a.time_left = non_negative(k.user_timeout - info.last_ack_received);
                a.time_left_estimated = true;
            }
            return a;
        case SocketTimer::keepalive: {
            const int probes = std::max<int>(s.timer_retransmits, info.probes);
            a.verdict = probes > 0 ? Verdict::probing : Verdict::healthy;
            // The timer fires at `expires`; the connection dies at the firing
            // where probes >= count (or, with a user timeout, where the silence
            // has reached it and a probe was sent).
            Duration left = s.timer_expires + k.interval * std::max(0, k.count - probes);
            if (has_user_timeout) {
                const Duration by_user_timeout =
                    std::max(non_negative(k.user_timeout - info.last_data_received),
                             s.timer_expires + (probes > 0 ? Duration::zero() : k.interval));
                left = std::min(left, by_user_timeout);
                a.time_left_estimated = true;
            }
            a.time_left = left;
            return a;
        }
        case SocketTimer::none:
        case SocketTimer::time_wait:
            break;
    }
    if (s.state == sys::TcpState::established && !k.enabled && !has_user_timeout) {
        a.verdict = Verdict::unprotected;
        a.time_left = Duration::infinite();
    }
    return a;
}

std::optional<DeathEvidence> death_evidence(const DiagSocket& s, Duration dead_for) {
    if (s.state != sys::TcpState::established || !s.info) return std::nullopt;
    const sys::TcpInfo& info = *s.info;
    if (info.last_ack_received < dead_for) return std::nullopt;
    DeathEvidence e;
    e.silent_for = info.last_ack_received;
    // idiag_retrans counts the same thing as tcpi_retransmits/tcpi_probes for
    // the armed timer; the larger of the two survives a reset between reads.
    const int retransmits =
        std::max<int>(info.retransmits, s.timer == SocketTimer::retransmit ? s.timer_retransmits : 0);
    if (info.unacked > 0 && (retransmits > 0 || info.backoff > 0)) {
        e.kind = Verdict::retransmitting;
        e.description = std::to_string(info.unacked) + " segments unacked, " + std::to_string(retransmits) +
                        " retransmissions (backoff " + std::to_string(info.backoff) + ")";
        return e;
    }
    const int probes = std::max<int>(info.probes, s.timer == SocketTimer::keepalive ? s.timer_retransmits : 0);
    if (s.timer == SocketTimer::keepalive && probes > 0) {
        e.kind = Verdict::probing;
        e.description = std::to_string(probes) + " keepalive probes unanswered";
        return e;
    }
    return std::nullopt;
}

}  // namespace lifeline::net
