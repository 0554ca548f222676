#include "net/socket_options.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

namespace lifeline::net {

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
#if defined(TCP_USER_TIMEOUT)
constexpr IntOption kUserTimeout{IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"};
#endif

Result<void> set_int(int fd, IntOption opt, long long value) {
    const int v = static_cast<int>(value);
    if (::setsockopt(fd, opt.level, opt.name, &v, sizeof(v)) != 0)
        return system_error(
            "setsockopt(" + std::string(opt.label) + ", " + std::to_string(value) + ") on socket " + std::to_string(fd),
            errno);
    return {};
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
#if defined(TCP_USER_TIMEOUT)
    if (auto r = set_int(fd, kUserTimeout, policy.user_timeout_value().ms()); !r) return r.error();
#endif
    return read_keepalive(fd);
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
#if defined(TCP_USER_TIMEOUT)
    Result<int> ut = get_int(fd, kUserTimeout);
    if (!ut) return ut.error();
    out.user_timeout = Duration::milliseconds(*ut);
#endif
    return out;
}

}  // namespace lifeline::net
