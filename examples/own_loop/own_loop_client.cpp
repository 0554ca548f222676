// A lifeline client in a plain poll() loop: the public sans-IO ClientSession
// over a non-blocking socket of our own, and nothing else of lifeline's (it
// links only lifeline_core). It speaks to `lifeline serve`, prints the
// handshake and RTT samples, and closes cleanly after `samples` of them.
//
//   own_loop_client 127.0.0.1:7000 [samples=3]
//
// Exit status: 0 after a clean close, 1 when the server died or an error ended it.
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
#include <lifeline/engine/client_session.hpp>
#include <string>
#include <vector>

namespace {

using lifeline::Duration;
using lifeline::Instant;

// steady_clock is monotonic: a wall-clock step can neither fake nor hide a timeout.
Instant now() {
    const auto since = std::chrono::steady_clock::now().time_since_epoch();
    return Instant::from_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(since).count());
}

// How long poll() may sleep before `deadline`: rounded up to a millisecond, -1 for never.
int poll_ms(Instant deadline, Instant at) {
    if (deadline == Instant::never()) return -1;
    const std::int64_t left_ns = (deadline - at).ns();
    return left_ns <= 0 ? 0 : static_cast<int>(std::min<std::int64_t>((left_ns + 999'999) / 1'000'000, 60'000));
}

int connect_to(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(address.c_str() + colon + 1)));
    if (colon == std::string::npos || ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
        return -1;
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int err = 0;
    socklen_t len = sizeof(err);
    pollfd p{fd, POLLOUT, 0};
    if ((::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 && errno != EINPROGRESS) ||
        ::poll(&p, 1, 5000) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: own_loop_client HOST:PORT [samples]\n");
        return 2;
    }
    const int samples = argc > 2 ? std::atoi(argv[2]) : 3;
    const int fd = connect_to(argv[1]);
    if (fd < 0) {
        std::fprintf(stderr, "own_loop_client: cannot connect to %s: %s\n", argv[1], std::strerror(errno));
        return 1;
    }
    lifeline::ClientSessionConfig config;  // Must outlive the session.
    config.id = "own-loop";
    config.heartbeat = Duration::milliseconds(100);
    config.timeout = Duration::seconds(1);
    lifeline::ClientSession session(config, now());  // Queues HELLO.

    std::vector<std::uint8_t> out;  // Bytes the socket has not taken yet.
    int rtts = 0, status = 1;
    bool closed = false;
    while (true) {
        while (auto e = session.poll_event()) {
            using K = lifeline::SessionEventKind;
            if (e->kind == K::opened) {
                std::printf("opened id=%s interval=%s\n", e->client_id.c_str(), to_string(e->interval).c_str());
            } else if (e->kind == K::rtt) {
                std::printf("rtt %s\n", to_string(e->rtt).c_str());
                if (++rtts == samples)
                    session.close(lifeline::CloseCode::normal, "done", lifeline::DisconnectReason::local_close);
            } else if (e->kind == K::dead || e->kind == K::error) {
                std::printf("%s %s\n", e->kind == K::dead ? "dead" : "error", e->message.c_str());
            } else if (e->kind == K::closed) {
                std::printf("closed %s\n", std::string(to_string(e->reason)).c_str());
                status = e->reason == lifeline::DisconnectReason::local_close ? 0 : 1;
                closed = true;
            }
        }
        // The span is valid only until the next call on the session: copy it out first.
        while (auto t = session.poll_transmit()) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
        if (!out.empty()) {
            const ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
            if (n > 0) {
                out.erase(out.begin(), out.begin() + n);
                session.on_sent(now());
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                session.abort(lifeline::DisconnectReason::peer_reset, std::strerror(errno));
                continue;
            }
        }
        if (closed) break;  // Best effort for the CLOSE frame; the socket closes below.
        std::fflush(stdout);
        pollfd p{fd, static_cast<short>(POLLIN | (out.empty() ? 0 : POLLOUT)), 0};
        ::poll(&p, 1, poll_ms(session.next_timeout(), now()));
        const Instant t = now();
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            std::uint8_t buf[4096];
            const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
            if (n > 0) session.receive({buf, static_cast<std::size_t>(n)}, t);
            if (n == 0) session.abort(lifeline::DisconnectReason::peer_closed, "end of stream");
            if (n < 0 && errno != EAGAIN) session.abort(lifeline::DisconnectReason::peer_reset, std::strerror(errno));
        }
        if (t >= session.next_timeout()) session.handle_timeout(t);
    }
    std::fflush(stdout);
    ::close(fd);
    return status;
}
