#include "preload/preload_config.hpp"

#include <string_view>

#include "lifeline/sys/detection_budget.hpp"

namespace lifeline::preload {

namespace {

// The keepalive part: explicit, from the detection target, or the default.
Result<KeepalivePolicy> keepalive_from_env(const char* keepalive, const char* detect_within, std::string& source) {
    if (keepalive != nullptr) {
        source = std::string("LIFELINE_KEEPALIVE=") + keepalive;
        Result<KeepalivePolicy> p = KeepalivePolicy::parse(keepalive);
        if (!p) return p.error().with_context("LIFELINE_KEEPALIVE");
        return p;
    }
    if (detect_within == nullptr) {
        source = "default";
        return KeepalivePolicy{};
    }
    source = std::string("LIFELINE_DETECT_WITHIN=") + detect_within;
    Result<Duration> target = parse_duration(detect_within);
    if (!target) return target.error().with_context("LIFELINE_DETECT_WITHIN");
    // Only the kernel detects inside a program nobody rewrote, in whole seconds.
    if (*target < Duration::seconds(2))
        return Error{"LIFELINE_DETECT_WITHIN=" + std::string(detect_within) +
                     ": only kernel keepalive applies here, and it counts whole seconds: use >= 2s"};
    Result<DetectionPlan> plan = policy_for_budget(*target);
    if (!plan) return plan.error().with_context("LIFELINE_DETECT_WITHIN");
    return plan->keepalive;
}

Result<bool> flag_from_env(const char* name, const char* value) {
    if (value == nullptr) return false;
    const std::string_view v = value;
    if (v == "1" || v == "true" || v == "yes") return true;
    if (v.empty() || v == "0" || v == "false" || v == "no") return false;
    return Error{std::string(name) + "=" + value + ": expected 1 or 0"};
}

}  // namespace

Result<PreloadConfig> config_from_env(const EnvLookup& lookup) {
    PreloadConfig config;
    if (const char* log = lookup("LIFELINE_LOG"); log != nullptr) config.log_path = log;
    Result<KeepalivePolicy> policy =
        keepalive_from_env(lookup("LIFELINE_KEEPALIVE"), lookup("LIFELINE_DETECT_WITHIN"), config.source);
    if (!policy) return policy.error();
    const char* user_timeout = lookup("LIFELINE_USER_TIMEOUT");
    if (user_timeout != nullptr) config.source += std::string(" LIFELINE_USER_TIMEOUT=") + user_timeout;
    Result<UserTimeout> ut = UserTimeout::parse(user_timeout != nullptr ? user_timeout : "auto");
    if (!ut) return ut.error().with_context("LIFELINE_USER_TIMEOUT");
    // `auto` with keepalive off means off, as on the command line.
    policy->user_timeout = !policy->enabled && ut->mode == UserTimeout::Mode::automatic ? UserTimeout::off() : *ut;
    if (auto valid = policy->validate(); !valid) return valid.error();
    config.policy = *policy;
    Result<bool> override_program = flag_from_env("LIFELINE_OVERRIDE", lookup("LIFELINE_OVERRIDE"));
    if (!override_program) return override_program.error();
    config.override_program = *override_program;
    return config;
}

}  // namespace lifeline::preload
