// The syscall floor: the least a server can do per heartbeat. A single-threaded,
// level-triggered epoll echo server with no timers and no per-connection
// state at all: every readable socket is read once and what was read is
// written back. It detects nothing (a silent peer is kept forever); it is the
// baseline that `lifeline bench --protocol echo` measures CPU and memory
// against, next to bench/asio_echo_server.cpp and lifeline's own server.
//
//   floor_echo_server --listen 127.0.0.1:0
//   -> prints "listening 127.0.0.1:PORT" once listening; SIGTERM or SIGINT ends it.
//
// A benchmark baseline, not product code: deliberately self-contained (no
// lifeline library), so it measures only the kernel.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

#include "echo_baseline.hpp"

namespace {

constexpr int kMaxEvents = 1024;
constexpr int kBacklog = 4096;
constexpr int kAcceptPauseMs = 100;  // Out of descriptors: how long to stop accepting.
constexpr std::size_t kBufferSize = 64 * 1024;

using echo_baseline::die;
using echo_baseline::die_code;
using echo_baseline::die_errno;
using echo_baseline::parse_listen;

long long now_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

void watch(int epoll_fd, int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) die_errno("epoll_ctl(ADD)");
}

}  // namespace

int main(int argc, char** argv) {
    const std::string listen_text = echo_baseline::listen_argument(argc, argv, "floor_echo_server");
    echo_baseline::raise_fd_limit();

    // Signals arrive as a readable descriptor, so exiting is just another event.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) die_errno("sigprocmask");
    const int signal_fd = ::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) die_errno("signalfd");

    sockaddr_in addr = parse_listen(listen_text);
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) die_errno("socket");
    const int one = 1;
    if (::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) die_errno("SO_REUSEADDR");
    if (::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) die_errno("bind " + listen_text);
    if (::listen(listener, kBacklog) != 0) die_errno("listen");
    socklen_t addr_len = sizeof(addr);
    if (::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) die_errno("getsockname");

    const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) die_errno("epoll_create1");
    watch(epoll_fd, signal_fd, EPOLLIN);
    watch(epoll_fd, listener, EPOLLIN);

    char host[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &addr.sin_addr, host, sizeof(host));
    std::printf("listening %s:%u\n", host, static_cast<unsigned>(ntohs(addr.sin_port)));
    std::fflush(stdout);

    static std::array<char, kBufferSize> buffer;
    std::array<epoll_event, kMaxEvents> events{};
    bool accepting = true;
    long long resume_accepting_ms = 0;
    for (;;) {
        // Only while accepts are paused is there anything to wait for but events.
        const int n = ::epoll_wait(epoll_fd, events.data(), kMaxEvents, accepting ? -1 : kAcceptPauseMs);
        if (n < 0) {
            if (errno == EINTR) continue;
            die_errno("epoll_wait");
        }
        if (!accepting && now_ms() >= resume_accepting_ms) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = listener;
            if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listener, &ev) != 0) die_errno("epoll_ctl(MOD listener)");
            accepting = true;
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[static_cast<std::size_t>(i)].data.fd;
            if (fd == signal_fd) {
                std::fprintf(stderr, "floor_echo_server: signal received, exiting\n");
                return 0;
            }
            if (fd == listener) {
                for (;;) {
                    const int conn = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (conn >= 0) {
                        // Echoes are tiny: Nagle would hold one back behind an unacknowledged one.
                        ::setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                        epoll_event ev{};
                        ev.events = EPOLLIN;
                        ev.data.fd = conn;
                        if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, conn, &ev) != 0) ::close(conn);
                        continue;
                    }
                    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        // Out of descriptors: the pending connection stays in the
                        // backlog and, level-triggered, would wake us every turn.
                        // Stop watching the listener for a moment instead.
                        epoll_event ev{};
                        ev.events = 0;
                        ev.data.fd = listener;
                        if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listener, &ev) != 0) {
                            die_errno("epoll_ctl(MOD listener)");
                        }
                        accepting = false;
                        resume_accepting_ms = now_ms() + kAcceptPauseMs;
                        break;
                    }
                    // ECONNABORTED, EPROTO, EINTR...: that one connection is gone; keep accepting.
                    if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO && errno != EPERM) break;
                }
                continue;
            }
            const ssize_t got = ::read(fd, buffer.data(), buffer.size());
            if (got > 0) {
                // No output buffer (that would be state): an echo the socket
                // cannot take now is dropped. Only a client that stopped
                // reading fills the buffer, and then it is not counting echoes.
                [[maybe_unused]] const ssize_t sent =
                    ::send(fd, buffer.data(), static_cast<std::size_t>(got), MSG_NOSIGNAL | MSG_DONTWAIT);
                continue;
            }
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
            ::close(fd);  // EOF or error; close() also takes it out of epoll.
        }
    }
}
