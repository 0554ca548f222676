#include "cli/policy_options.hpp"

#include "cli/commands.hpp"
#include "cli/flag_names.hpp"
#include "lifeline/sys/detection_budget.hpp"

namespace lifeline::cli {

void add_policy_options(CLI::App& sub, PolicyOptions& o) {
    add_duration_option(sub, "--detect-within", o.detect_within,
                        "Derive the kernel keepalive and user timeout from one detection target (>= 2s)");
    sub.add_option("--keepalive", o.keepalive, "Kernel keepalive IDLE:INTERVAL:COUNT, or off")->capture_default_str();
    sub.add_option("--user-timeout", o.user_timeout, "TCP_USER_TIMEOUT: auto (= keepalive budget), off, or a duration")
        ->capture_default_str();
}

Result<KeepalivePolicy> resolve_policy(const PolicyOptions& o, const CLI::App& sub,
                                       std::vector<std::string>& explanation) {
    Result<KeepalivePolicy> parsed = KeepalivePolicy::parse(o.keepalive, o.user_timeout);
    if (!parsed) return Error{with_flag_names(parsed.error().message, kKeepaliveFlags)};
    if (o.detect_within <= Duration::zero() || sub.count("--keepalive") > 0) return parsed;
    if (o.detect_within < Duration::seconds(2))
        return Error{"--detect-within " + to_string(o.detect_within) +
                     ": only the kernel detects here, and its keepalive counts whole seconds: use >= 2s"};
    Result<DetectionPlan> plan = policy_for_budget(o.detect_within);
    if (!plan) return plan.error().with_context("--detect-within");
    // The plan's first sentence is about heartbeats, which a program nobody
    // rewrote does not send; the kernel's part is what applies.
    for (std::size_t i = 1; i < plan->explanation.size(); ++i) explanation.push_back(plan->explanation[i]);
    KeepalivePolicy policy = plan->keepalive;
    policy.user_timeout = parsed->user_timeout;
    return policy;
}

}  // namespace lifeline::cli
