#include "lifeline/keepalive.hpp"

#include <algorithm>
#include <charconv>
#include <climits>

namespace lifeline {

namespace {
Result<void> check_seconds(const char* option, Duration d, Duration max) {
    const std::string range = "allowed: whole seconds from 1s to " + to_string(max);
    if (d.ns() % 1'000'000'000 != 0)
        return Error{std::string(option) + " = " + to_string(d) + " is not a whole number of seconds (" + range + ")"};
    if (d < Duration::seconds(1) || d > max)
        return Error{std::string(option) + " = " + to_string(d) + " is out of range (" + range + ")"};
    return {};
}
}  // namespace

Result<UserTimeout> UserTimeout::parse(std::string_view text) {
    if (text == "auto") return automatic();
    if (text == "off") return off();
    Result<Duration> d = parse_duration(text);
    if (!d) return Error{"user timeout: expected auto, off or a duration: " + d.error().message};
    return fixed(*d);
}

std::string UserTimeout::to_string() const {
    switch (mode) {
        case Mode::automatic:
            return "auto";
        case Mode::off:
            return "off";
        case Mode::fixed:
            return lifeline::to_string(value);
    }
    return "?";
}

Result<void> KeepalivePolicy::validate() const {
    if (enabled) {
        if (auto r = check_seconds("TCP_KEEPIDLE", idle, kMaxKeepaliveIdle); !r) return r;
        if (auto r = check_seconds("TCP_KEEPINTVL", interval, kMaxKeepaliveInterval); !r) return r;
        if (count < 1 || count > kMaxKeepaliveCount)
            return Error{"TCP_KEEPCNT = " + std::to_string(count) + " is out of range (allowed: 1 to " +
                         std::to_string(kMaxKeepaliveCount) + ")"};
    }
    if (user_timeout.mode == UserTimeout::Mode::fixed) {
        const Duration v = user_timeout.value;
        if (v.ns() % 1'000'000 != 0 || v < Duration::milliseconds(1) || v > Duration::milliseconds(INT_MAX))
            return Error{"TCP_USER_TIMEOUT = " + lifeline::to_string(v) +
                         " is out of range (allowed: whole milliseconds from 1ms to " +
                         lifeline::to_string(Duration::milliseconds(INT_MAX)) + ")"};
    }
    if (!enabled && user_timeout.mode == UserTimeout::Mode::automatic)
        return Error{
            "TCP_USER_TIMEOUT = auto needs keepalive on (auto is idle + interval * count); "
            "use off or an explicit duration"};
    return {};
}

Duration KeepalivePolicy::budget() const {
    if (!enabled) return Duration::zero();
    return idle + interval * count;
}

Duration KeepalivePolicy::user_timeout_value() const {
    switch (user_timeout.mode) {
        case UserTimeout::Mode::automatic:
            return budget();
        case UserTimeout::Mode::off:
            return Duration::zero();
        case UserTimeout::Mode::fixed:
            return user_timeout.value;
    }
    return Duration::zero();
}

Result<KeepalivePolicy> KeepalivePolicy::parse(std::string_view spec) {
    if (spec == "off") return disabled();
    const auto bad = [&](const std::string& why) {
        return Error{"keepalive '" + std::string(spec) + "': " + why +
                     " (expected IDLE:INTERVAL:COUNT such as 10s:2s:3, or off)"};
    };
    const std::size_t first = spec.find(':');
    const std::size_t second = first == std::string_view::npos ? first : spec.find(':', first + 1);
    if (second == std::string_view::npos) return bad("needs three fields");
    Result<Duration> idle = parse_duration(spec.substr(0, first));
    if (!idle) return bad(idle.error().message);
    Result<Duration> interval = parse_duration(spec.substr(first + 1, second - first - 1));
    if (!interval) return bad(interval.error().message);
    const std::string_view count_text = spec.substr(second + 1);
    int count = 0;
    const auto [end, ec] = std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
    if (ec != std::errc{} || end != count_text.data() + count_text.size()) return bad("count is not a whole number");
    KeepalivePolicy policy;
    policy.idle = *idle;
    policy.interval = *interval;
    policy.count = count;
    if (auto valid = policy.validate(); !valid) return bad(valid.error().message);
    return policy;
}

Result<KeepalivePolicy> KeepalivePolicy::parse(std::string_view spec, std::string_view user_timeout) {
    Result<KeepalivePolicy> policy = parse(spec);
    if (!policy) return policy.error().with_context("keepalive");
    Result<UserTimeout> ut = UserTimeout::parse(user_timeout);
    if (!ut) return ut.error().with_context("user_timeout");
    policy->user_timeout = !policy->enabled && ut->mode == UserTimeout::Mode::automatic ? UserTimeout::off() : *ut;
    if (auto valid = policy->validate(); !valid) return valid.error().with_context("user_timeout");
    return policy;
}

std::string KeepalivePolicy::to_string() const {
    std::string out =
        enabled ? lifeline::to_string(idle) + ":" + lifeline::to_string(interval) + ":" + std::to_string(count) : "off";
    out += " user-timeout=";
    out += user_timeout.to_string();
    if (user_timeout.mode == UserTimeout::Mode::automatic && enabled) {
        out += '(';
        out += lifeline::to_string(user_timeout_value());
        out += ')';
    }
    return out;
}

Duration idle_peer_detection(const TcpKernelSettings& s) {
    return s.keepalive_time + s.keepalive_intvl * s.keepalive_probes;
}

Duration retransmission_give_up(int retries2) {
    if (retries2 <= 0) return Duration::zero();
    constexpr int kThresh = 9;  // ilog2(120 s / 200 ms) = ilog2(600)
    if (retries2 <= kThresh) return kTcpRtoMin * ((std::int64_t{2} << retries2) - 1);
    return kTcpRtoMin * ((std::int64_t{2} << kThresh) - 1) + kTcpRtoMax * (retries2 - kThresh);
}

Duration connect_give_up(int syn_retries) {
    Duration total;
    Duration rto = kTcpInitialRto;
    for (int i = 0; i <= std::max(syn_retries, 0); ++i) {
        total += rto;
        rto = std::min(rto * 2, kTcpRtoMax);
    }
    return total;
}

}  // namespace lifeline
