#include "preload/preload_policy.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "lifeline/sys/socket_options.hpp"
#include "preload/preload_config.hpp"
#include "preload/preload_log.hpp"
#include "preload/socket_table.hpp"

namespace lifeline::preload {

namespace {

// Set once by start(), before any hook uses it; never freed (the program may
// call connect from an atexit handler).
const PreloadConfig* config = nullptr;

const char* event_name(SocketEvent e) {
    switch (e) {
        case SocketEvent::connect:
            return "connect";
        case SocketEvent::accept:
            return "accept";
        case SocketEvent::listen:
            return "listen";
    }
    return "?";
}

int int_option(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof(v);
    return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

// "ipv4"/"ipv6" for a TCP socket; nullopt for anything else (UDP, Unix,
// MPTCP, not a socket), which is left alone.
std::optional<const char*> tcp_family(int fd) {
    if (int_option(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM) return std::nullopt;
    if (int_option(fd, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP) return std::nullopt;
    const int domain = int_option(fd, SOL_SOCKET, SO_DOMAIN);
    if (domain == AF_INET) return "ipv4";
    if (domain == AF_INET6) return "ipv6";
    return std::nullopt;
}

// What the program had, as a policy: applying it undoes ours.
Result<sys::EffectiveKeepalive> restore(int fd, const sys::EffectiveKeepalive& before) {
    KeepalivePolicy timings;
    timings.idle = before.idle;
    timings.interval = before.interval;
    timings.count = before.count;
    timings.user_timeout =
        before.user_timeout > Duration::zero() ? UserTimeout::fixed(before.user_timeout) : UserTimeout::off();
    Result<sys::EffectiveKeepalive> r = sys::apply_keepalive(fd, timings);
    if (!r || before.enabled) return r;
    KeepalivePolicy off = KeepalivePolicy::disabled();
    off.user_timeout = timings.user_timeout;
    return sys::apply_keepalive(fd, off);
}

void apply(int fd, SocketState& s, JsonLine& line) {
    if (!s.before_known) {
        Result<sys::EffectiveKeepalive> before = sys::read_keepalive(fd);
        s.before_known = static_cast<bool>(before);
        if (before) s.before = *before;
    }
    s.applied = true;  // Even on an error: options set before it stay set.
    Result<sys::EffectiveKeepalive> in_force = sys::apply_keepalive(fd, config->policy);
    if (!in_force) {
        line.field("action", "error").field("error", in_force.error().message);
        return;
    }
    line.field("action", "applied").field("policy", config->policy.to_string()).keepalive("in_force", *in_force);
    if (s.chose != nullptr) line.field("reason", std::string("override: the program set ") + s.chose);
}

// The decision for a socket's first event; `listener` is the accepting
// socket's state (a copy), if known.
void decide(int fd, SocketState& s, const SocketState* listener, JsonLine& line) {
    if (listener != nullptr && listener->chose != nullptr && s.chose == nullptr) s.chose = listener->chose;
    if (s.chose != nullptr && !config->override_program) {
        line.field("action", "skipped").field("reason", std::string("the program set ") + s.chose);
        return;
    }
    // An accepted socket starts with its listener's options: what the program
    // had is what the listener had before the policy.
    if (listener != nullptr && listener->applied && listener->before_known) {
        s.before = listener->before;
        s.before_known = true;
    }
    apply(fd, s, line);
}

}  // namespace

bool start() {
    Result<PreloadConfig> parsed = config_from_env([](const char* name) { return std::getenv(name); });
    const char* log = std::getenv("LIFELINE_LOG");
    if (log != nullptr) open_log(log);
    install_fork_handlers();
    JsonLine line;
    line.field("event", "start");
    if (!parsed) {
        line.field("action", "error").field("error", parsed.error().message);
        write_log(line);
        if (!log_enabled())
            std::fprintf(stderr, "liblifeline_preload: %s; no policy applied\n", parsed.error().message.c_str());
        return false;
    }
    config = new PreloadConfig(std::move(*parsed));
    line.field("policy", config->policy.to_string()).field("source", config->source);
    write_log(line.flag("override", config->override_program));
    return true;
}

bool override_program() { return config != nullptr && config->override_program; }

void on_socket_event(int fd, SocketEvent event, int listener) {
    const std::optional<const char*> family = tcp_family(fd);
    if (!family) return;
    JsonLine line;
    line.field("fd", fd).field("family", *family).field("event", event_name(event));
    {
        const TableLock lock;
        std::optional<SocketState> listener_state;
        if (listener >= 0) {
            if (const SocketState* l = state_slot(listener)) listener_state = *l;
        }
        SocketState untracked;
        SocketState* s = state_slot(fd);
        if (s != nullptr && s->seen) return;  // A repeated connect or listen.
        if (s == nullptr) {
            s = &untracked;
            line.flag("tracked", false);
        }
        s->seen = true;
        decide(fd, *s, listener_state ? &*listener_state : nullptr, line);
    }
    write_log(line);
}

// The start of a setsockopt log line; nullopt for a socket that is not TCP.
static std::optional<JsonLine> setsockopt_line(int fd, const char* option) {
    const std::optional<const char*> family = tcp_family(fd);
    if (!family) return std::nullopt;
    JsonLine line;
    line.field("fd", fd).field("family", *family).field("event", "setsockopt").field("option", option);
    return line;
}

void on_program_choice(int fd, const char* option) {
    std::optional<JsonLine> start = setsockopt_line(fd, option);
    if (!start) return;
    JsonLine& line = *start;
    {
        const TableLock lock;
        SocketState* s = state_slot(fd);
        if (s == nullptr || s->chose != nullptr) return;  // Untracked, or already the program's.
        s->chose = option;
        line.field("action", "program_chose");
        if (s->applied && s->before_known) {
            Result<sys::EffectiveKeepalive> back = restore(fd, s->before);
            s->applied = false;
            if (back)
                line.field("undone", "the policy was removed").keepalive("in_force", *back);
            else
                line.field("error", back.error().message);
        }
    }
    write_log(line);
}

void on_program_keepalive_on(int fd) {
    const TableLock lock;
    SocketState* s = state_slot(fd);
    if (s != nullptr && s->applied && s->before_known) s->before.enabled = true;
}

void after_program_choice_overridden(int fd, const char* option) {
    std::optional<JsonLine> start = setsockopt_line(fd, option);
    if (!start) return;
    JsonLine& line = *start;
    {
        const TableLock lock;
        SocketState* s = state_slot(fd);
        if (s == nullptr) return;
        if (s->chose == nullptr) s->chose = option;
        if (!s->applied) return;  // Applied later, at connect, accept or listen.
        Result<sys::EffectiveKeepalive> again = sys::apply_keepalive(fd, config->policy);
        if (s->override_logged) return;
        s->override_logged = true;
        line.field("action", "overridden");
        if (again)
            line.keepalive("in_force", *again);
        else
            line.field("error", again.error().message);
    }
    write_log(line);
}

}  // namespace lifeline::preload
