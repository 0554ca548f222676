#include <algorithm>

#include "lifeline/sys/detection_budget.hpp"

namespace lifeline {

namespace {
Duration whole_seconds(Duration d) { return Duration::seconds(d.ns() / 1'000'000'000); }

// One probe and its ACK: Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12 = 66 bytes each.
constexpr double kProbeRoundTripBytes = 2 * 66;
}  // namespace

Result<KeepaliveAdvice> advise_keepalive(Duration target, std::optional<Duration> nat_timeout) {
    if (target < Duration::seconds(2))
        return Error{"target " + to_string(target) +
                     " is below what kernel keepalive can promise (2s: 1s idle + one 1s probe); "
                     "use application heartbeats for sub-second detection"};
    if (nat_timeout && *nat_timeout < Duration::seconds(2))
        return Error{"NAT timeout " + to_string(*nat_timeout) + " is too short for kernel keepalive (idle >= 1s)"};

    KeepaliveAdvice advice;
    KeepalivePolicy& p = advice.policy;
    // Three probes tolerate two lost ones; below 4 s there is room for one.
    p.count = target >= Duration::seconds(4) ? 3 : 1;
    // Half the budget for idle time, half for probing: longer idle means less
    // probe traffic; more probing time means a lost probe or a brief outage is
    // not fatal.
    p.interval = std::max(Duration::seconds(1), whole_seconds(target / (2 * p.count)));
    p.idle = std::max(Duration::seconds(1), whole_seconds(target - p.interval * p.count));
    p.idle = std::min(p.idle, kMaxKeepaliveIdle);
    p.interval = std::min(p.interval, kMaxKeepaliveInterval);
    if (nat_timeout) {
        // Probes only refresh a NAT mapping if they start before it expires: keep
        // idle at two thirds of the NAT timeout.
        const Duration nat_idle = std::max(Duration::seconds(1), whole_seconds(*nat_timeout * 2 / 3));
        if (nat_idle < p.idle) {
            p.idle = nat_idle;
            advice.notes.push_back("idle lowered to " + to_string(p.idle) + " (2/3 of the " + to_string(*nat_timeout) +
                                   " NAT timeout) so probes refresh the NAT mapping before it is forgotten");
        }
    }
    p.user_timeout = UserTimeout::automatic();
    advice.worst_case = p.budget();
    advice.probes_per_hour = 3600.0 / p.idle.seconds_f();
    advice.bytes_per_hour = advice.probes_per_hour * kProbeRoundTripBytes;
    int r = 1;
    while (r < 15 && retransmission_give_up(r + 1) <= target) ++r;
    advice.retries2_within_target = r;

    advice.notes.push_back("an idle, healthy connection costs " +
                           std::to_string(static_cast<int>(advice.probes_per_hour + 0.5)) +
                           " probes per hour (a probe and its ACK, about " +
                           std::to_string(static_cast<int>(advice.bytes_per_hour + 0.5)) +
                           " bytes/hour); a longer idle costs less but detects later");
    advice.notes.push_back(
        "keepalive sends no probes while data is unacknowledged: TCP_USER_TIMEOUT = " + to_string(advice.worst_case) +
        " (per socket; there is no sysctl for it) bounds that case to the same budget");
    if (r < 8) {
        advice.notes.push_back("the host-wide alternative, tcp_retries2 = " + std::to_string(r) + ", gives up after " +
                               to_string(retransmission_give_up(r)) +
                               " for every connection on the host; RFC 1122 (4.2.3.5) asks for at least 100 s, "
                               "so prefer the per-socket user timeout");
    }
    return advice;
}

Result<DetectionPlan> policy_for_budget(Duration target) {
    if (target < Duration::milliseconds(300))
        return Error{"detection budget " + to_string(target) +
                     " is too short: heartbeats need at least 100 ms intervals (use >= 300ms)"};
    DetectionPlan plan;
    plan.heartbeat_timeout = target;
    plan.heartbeat_interval = Duration::milliseconds(target.ms() / 3);
    const Duration kernel_target = std::max(target, Duration::seconds(2));
    Result<KeepaliveAdvice> advice = advise_keepalive(kernel_target, std::nullopt);
    if (!advice) return advice.error();
    plan.keepalive = advice->policy;
    plan.explanation.push_back("heartbeat: PING after " + to_string(plan.heartbeat_interval) +
                               " of quiet, peer dead after " + to_string(plan.heartbeat_timeout) +
                               " of silence (interval = target / 3: two heartbeats may be lost)");
    plan.explanation.push_back("kernel keepalive " + plan.keepalive.to_string() + ": worst case " +
                               to_string(plan.keepalive.budget()) + " for a vanished host, also with data in flight");
    if (kernel_target > target) {
        plan.explanation.push_back("the kernel cannot go below 2s (whole seconds): heartbeats alone meet " +
                                   to_string(target));
    }
    return plan;
}

}  // namespace lifeline
