// liblifeline_preload.so's entry points: connect, accept, accept4, listen and
// setsockopt, which call the real ones (dlsym RTLD_NEXT) and, around them,
// src/preload/preload_policy. The program sees its calls' results and errno
// unchanged; nothing of ours throws past here.
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cerrno>

#include "preload/preload_policy.hpp"

#define LIFELINE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using ConnectFn = int (*)(int, const sockaddr*, socklen_t);
using AcceptFn = int (*)(int, sockaddr*, socklen_t*);
using Accept4Fn = int (*)(int, sockaddr*, socklen_t*, int);
using ListenFn = int (*)(int, int);
using SetsockoptFn = int (*)(int, int, int, const void*, socklen_t);

struct RealCalls {
    ConnectFn connect = nullptr;
    AcceptFn accept = nullptr;
    Accept4Fn accept4 = nullptr;
    ListenFn listen = nullptr;
    SetsockoptFn setsockopt = nullptr;
};

constinit RealCalls real;
constinit bool active = false;
pthread_once_t once = PTHREAD_ONCE_INIT;

// Set while our own code runs on this thread: apply_keepalive's setsockopt
// calls come back through the wrapper and must go straight to the kernel.
// initial-exec: the library is loaded at start-up, so its TLS is static and
// reading it never allocates.
__attribute__((tls_model("initial-exec"))) thread_local bool in_hook = false;

template <typename Fn>
Fn next_symbol(const char* name) {
    return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

void initialise() {
    real.connect = next_symbol<ConnectFn>("connect");
    real.accept = next_symbol<AcceptFn>("accept");
    real.accept4 = next_symbol<Accept4Fn>("accept4");
    real.listen = next_symbol<ListenFn>("listen");
    real.setsockopt = next_symbol<SetsockoptFn>("setsockopt");
    in_hook = true;
    try {
        active = lifeline::preload::start();
    } catch (...) {
        active = false;  // Out of memory at start-up: the program runs unprotected.
    }
    in_hook = false;
}

void ensure_initialised() { ::pthread_once(&once, initialise); }

// Our work between the program and the kernel: errno as the real call left
// it, the re-entry guard set, and no exception escaping.
template <typename F>
void hook(F&& work) noexcept {
    if (!active || in_hook) return;
    const int saved = errno;
    in_hook = true;
    try {
        work();
    } catch (...) {
        // Out of memory while logging: the program's call matters more.
    }
    in_hook = false;
    errno = saved;
}

bool ip_address(const sockaddr* addr) {
    return addr != nullptr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6);
}

// The program's own timing choice, or null: a timing option, or keepalive off.
// Merely turning SO_KEEPALIVE on is not a choice of timings.
const char* program_choice(int level, int name, const void* value, socklen_t len) {
    if (level == IPPROTO_TCP) {
        switch (name) {
            case TCP_KEEPIDLE:
                return "TCP_KEEPIDLE";
            case TCP_KEEPINTVL:
                return "TCP_KEEPINTVL";
            case TCP_KEEPCNT:
                return "TCP_KEEPCNT";
            case TCP_USER_TIMEOUT:
                return "TCP_USER_TIMEOUT";
            default:
                return nullptr;
        }
    }
    if (level == SOL_SOCKET && name == SO_KEEPALIVE && value != nullptr && len >= sizeof(int) &&
        *static_cast<const int*>(value) == 0)
        return "SO_KEEPALIVE=0";
    return nullptr;
}

}  // namespace

LIFELINE_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
    ensure_initialised();
    if (ip_address(addr))
        hook([&] { lifeline::preload::on_socket_event(fd, lifeline::preload::SocketEvent::connect, -1); });
    return real.connect(fd, addr, len);
}

LIFELINE_EXPORT int accept(int fd, sockaddr* __restrict addr, socklen_t* __restrict len) {
    ensure_initialised();
    const int accepted = real.accept(fd, addr, len);
    if (accepted >= 0)
        hook([&] { lifeline::preload::on_socket_event(accepted, lifeline::preload::SocketEvent::accept, fd); });
    return accepted;
}

LIFELINE_EXPORT int accept4(int fd, sockaddr* __restrict addr, socklen_t* __restrict len, int flags) {
    ensure_initialised();
    const int accepted = real.accept4(fd, addr, len, flags);
    if (accepted >= 0)
        hook([&] { lifeline::preload::on_socket_event(accepted, lifeline::preload::SocketEvent::accept, fd); });
    return accepted;
}

LIFELINE_EXPORT int listen(int fd, int backlog) noexcept {
    ensure_initialised();
    const int rc = real.listen(fd, backlog);
    if (rc == 0) hook([&] { lifeline::preload::on_socket_event(fd, lifeline::preload::SocketEvent::listen, -1); });
    return rc;
}

LIFELINE_EXPORT int setsockopt(int fd, int level, int name, const void* value, socklen_t len) noexcept {
    ensure_initialised();
    const char* choice = in_hook ? nullptr : program_choice(level, name, value, len);
    if (choice == nullptr) {
        const int rc = real.setsockopt(fd, level, name, value, len);
        if (rc == 0 && level == SOL_SOCKET && name == SO_KEEPALIVE)
            hook([&] { lifeline::preload::on_program_keepalive_on(fd); });
        return rc;
    }
    if (lifeline::preload::override_program()) {
        const int rc = real.setsockopt(fd, level, name, value, len);
        if (rc == 0) hook([&] { lifeline::preload::after_program_choice_overridden(fd, choice); });
        return rc;
    }
    hook([&] { lifeline::preload::on_program_choice(fd, choice); });
    return real.setsockopt(fd, level, name, value, len);
}
