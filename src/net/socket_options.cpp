#include "lifeline/sys/socket_options.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace lifeline::sys {

namespace {

// The one place where keepalive option names differ per platform.
#if defined(__linux__)
constexpr int kKeepIdleOption = TCP_KEEPIDLE;
#elif defined(__APPLE__)
constexpr int kKeepIdleOption = TCP_KEEPALIVE;  // macOS names idle TCP_KEEPALIVE.
#elif defined(_WIN32)
#error "Windows sets idle/interval with WSAIoctl(SIO_KEEPALIVE_VALS); not built here yet"
#endif

struct IntOption {
    int level;
    int name;
    const char* label;
};

constexpr IntOption kSoKeepalive{SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"};
constexpr IntOption kKeepIdle{IPPROTO_TCP, kKeepIdleOption, "TCP_KEEPIDLE"};
constexpr IntOption kKeepIntvl{IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"};
constexpr IntOption kKeepCnt{IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"};
constexpr IntOption kUserTimeout{IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"};

Result<void> set_int(int fd, IntOption opt, long long value) {
    const int v = static_cast<int>(value);
    if (::setsockopt(fd, opt.level, opt.name, &v, sizeof(v)) != 0) {
        Error e = system_error(
            "setsockopt(" + std::string(opt.label) + ", " + std::to_string(value) + ") on socket " + std::to_string(fd),
            errno);
        // Not a socket, or not TCP, is the caller's; anything else the kernel would not take.
        if (errno != EBADF && errno != ENOTSOCK) e.code = Errc::refused_by_kernel;
        return e;
    }
    return {};
}

// The kernel may keep another value than it was given without failing
// (rounding, a clamp): what is read back is what is in force.
Result<void> check_kept(int fd, const char* option, long long asked, long long kept, const char* unit) {
    if (asked == kept) return {};
    return make_error(Errc::refused_by_kernel, std::string(option) + " on socket " + std::to_string(fd) + ": asked " +
                                                   std::to_string(asked) + " " + unit + ", the kernel keeps " +
                                                   std::to_string(kept) + " " + unit);
}

Result<void> check_policy_kept(int fd, const KeepalivePolicy& policy, const EffectiveKeepalive& in_force) {
    if (auto r = check_kept(fd, "SO_KEEPALIVE", policy.enabled, in_force.enabled, ""); !r) return r;
    if (policy.enabled) {
        if (auto r = check_kept(fd, "TCP_KEEPIDLE", policy.idle.ns() / 1'000'000'000,
                                in_force.idle.ns() / 1'000'000'000, "s");
            !r)
            return r;
        if (auto r = check_kept(fd, "TCP_KEEPINTVL", policy.interval.ns() / 1'000'000'000,
                                in_force.interval.ns() / 1'000'000'000, "s");
            !r)
            return r;
        if (auto r = check_kept(fd, "TCP_KEEPCNT", policy.count, in_force.count, "probes"); !r) return r;
    }
    return check_kept(fd, "TCP_USER_TIMEOUT", policy.user_timeout_value().ms(), in_force.user_timeout.ms(), "ms");
}

Result<int> get_int(int fd, IntOption opt) {
    int v = 0;
    socklen_t len = sizeof(v);
    if (::getsockopt(fd, opt.level, opt.name, &v, &len) != 0)
        return system_error("getsockopt(" + std::string(opt.label) + ") on socket " + std::to_string(fd), errno);
    return v;
}

}  // namespace

Result<EffectiveKeepalive> apply_keepalive(int fd, const KeepalivePolicy& policy) {
    if (auto valid = policy.validate(); !valid) return valid.error().with_context("socket " + std::to_string(fd));
    if (policy.enabled) {
        if (auto r = set_int(fd, kKeepIdle, policy.idle.ns() / 1'000'000'000); !r) return r.error();
        if (auto r = set_int(fd, kKeepIntvl, policy.interval.ns() / 1'000'000'000); !r) return r.error();
        if (auto r = set_int(fd, kKeepCnt, policy.count); !r) return r.error();
    }
    // SO_KEEPALIVE last: with the timings already in place, the first idle
    // period already uses them.
    if (auto r = set_int(fd, kSoKeepalive, policy.enabled ? 1 : 0); !r) return r.error();
    if (auto r = set_int(fd, kUserTimeout, policy.user_timeout_value().ms()); !r) return r.error();
    Result<EffectiveKeepalive> in_force = read_keepalive(fd);
    if (!in_force) return in_force;
    if (auto kept = check_policy_kept(fd, policy, *in_force); !kept) return kept.error();
    return in_force;
}

Result<Duration> apply_user_timeout(int fd, Duration timeout) {
    if (timeout < Duration::zero() || timeout.ms() > INT32_MAX)
        return Error{"user timeout " + to_string(timeout) + " on socket " + std::to_string(fd) +
                     " is out of range (0 = off, up to 2^31-1 ms)"};
    if (auto r = set_int(fd, kUserTimeout, timeout.ms()); !r) return r.error();
    Result<int> kept = get_int(fd, kUserTimeout);
    if (!kept) return kept.error();
    if (auto r = check_kept(fd, "TCP_USER_TIMEOUT", timeout.ms(), *kept, "ms"); !r) return r.error();
    return Duration::milliseconds(*kept);
}

Result<EffectiveKeepalive> read_keepalive(int fd) {
    EffectiveKeepalive out;
    Result<int> on = get_int(fd, kSoKeepalive);
    if (!on) return on.error();
    Result<int> idle = get_int(fd, kKeepIdle);
    if (!idle) return idle.error();
    Result<int> intvl = get_int(fd, kKeepIntvl);
    if (!intvl) return intvl.error();
    Result<int> cnt = get_int(fd, kKeepCnt);
    if (!cnt) return cnt.error();
    out.enabled = *on != 0;
    out.idle = Duration::seconds(*idle);
    out.interval = Duration::seconds(*intvl);
    out.count = *cnt;
    Result<int> ut = get_int(fd, kUserTimeout);
    if (!ut) return ut.error();
    out.user_timeout = Duration::milliseconds(*ut);
    return out;
}

}  // namespace lifeline::sys
