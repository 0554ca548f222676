// A lifeline server in a plain poll() loop: one public sans-IO ServerSession
// per accepted connection over non-blocking sockets of our own, and nothing
// else of lifeline's (it links only lifeline_core). `lifeline connect` talks
// to it; it answers PINGs, echoes DATA, and reports the handshake, messages,
// dead peers and closes, one line each.
//
//   own_loop_server 127.0.0.1:0      # prints "listening 127.0.0.1:PORT" first
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <lifeline/engine/server_session.hpp>
#include <memory>
#include <string>
#include <vector>

namespace {

using lifeline::Instant;

// steady_clock is monotonic: a wall-clock step can neither fake nor hide a timeout.
Instant now() {
    const auto since = std::chrono::steady_clock::now().time_since_epoch();
    return Instant::from_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(since).count());
}

struct Connection {
    int fd;
    std::unique_ptr<lifeline::ServerSession> session;  // Not movable: kept behind a pointer.
    std::vector<std::uint8_t> out;                     // Bytes the socket has not taken yet.
    bool closed = false;
};

constexpr std::size_t kMaxConnections = 64;  // More are closed at accept.

int listen_on(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(address.c_str() + colon + 1)));
    if (colon == std::string::npos || ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
        return -1;
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    socklen_t len = sizeof(sa);
    if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
        return -1;
    }
    char host[INET_ADDRSTRLEN];
    std::printf("listening %s:%u\n", ::inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host)), ntohs(sa.sin_port));
    std::fflush(stdout);
    return fd;
}

// Hands the session's events to the application, then its bytes to the socket.
void drive(Connection& c) {
    using K = lifeline::SessionEventKind;
    while (auto e = c.session->poll_event()) {
        const std::string peer = c.session->client_id();
        if (e->kind == K::opened) std::printf("opened id=%s\n", e->client_id.c_str());
        if (e->kind == K::message) {
            std::printf("message %s %.*s\n", peer.c_str(), static_cast<int>(e->payload.size()),
                        reinterpret_cast<const char*>(e->payload.data()));
            (void)c.session->send(e->payload);  // Echo; an error only means the session is closing.
        }
        if (e->kind == K::dead) std::printf("dead %s %s\n", peer.c_str(), to_string(e->silence).c_str());
        if (e->kind == K::closed) {
            std::printf("closed %s %s\n", peer.c_str(), std::string(to_string(e->reason)).c_str());
            c.closed = true;
        }
    }
    // The span is valid only until the next call on the session: copy it out first.
    while (auto t = c.session->poll_transmit()) c.out.insert(c.out.end(), t->bytes.begin(), t->bytes.end());
    if (c.out.empty()) return;
    const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
        c.out.erase(c.out.begin(), c.out.begin() + n);
        c.session->on_sent(now());
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && !c.closed) {
        c.session->abort(lifeline::DisconnectReason::peer_reset, std::strerror(errno));
        drive(c);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const int listener = listen_on(argc > 1 ? argv[1] : "127.0.0.1:0");
    if (listener < 0) {
        std::fprintf(stderr, "own_loop_server: cannot listen: %s\n", std::strerror(errno));
        return 1;
    }
    lifeline::ServerSessionConfig config;  // Defaults: 1 s heartbeat, 3 s timeout; shared by all sessions.
    std::vector<Connection> conns;
    std::uint64_t accepted = 0;
    while (true) {
        std::vector<pollfd> fds{{listener, POLLIN, 0}};
        Instant deadline = Instant::never();
        for (const Connection& c : conns) {
            fds.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
            deadline = std::min(deadline, c.session->next_timeout());
        }
        const std::int64_t left_ns = (deadline - now()).ns();
        const int wait_ms =
            deadline == Instant::never()
                ? -1
                : static_cast<int>(std::clamp<std::int64_t>((left_ns + 999'999) / 1'000'000, 0, 60'000));
        std::fflush(stdout);
        ::poll(fds.data(), fds.size(), wait_ms);
        const Instant t = now();
        for (std::size_t i = 0; i < conns.size(); ++i) {
            Connection& c = conns[i];
            if (fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) {
                std::uint8_t buf[4096];
                const ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
                if (n > 0) c.session->receive({buf, static_cast<std::size_t>(n)}, t);
                if (n == 0) c.session->abort(lifeline::DisconnectReason::peer_closed, "end of stream");
                if (n < 0 && errno != EAGAIN)
                    c.session->abort(lifeline::DisconnectReason::peer_reset, std::strerror(errno));
            }
            if (t >= c.session->next_timeout()) c.session->handle_timeout(t);
            drive(c);
        }
        std::erase_if(conns, [](const Connection& c) { return c.closed && (::close(c.fd), true); });
        if (fds[0].revents & POLLIN) {
            const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0 && conns.size() >= kMaxConnections) ::close(fd);
            if (fd >= 0 && conns.size() < kMaxConnections) {
                conns.push_back({fd, std::make_unique<lifeline::ServerSession>(config, ++accepted, t), {}});
            }
        }
    }
}
