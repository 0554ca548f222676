// Broadcast: one 64-byte message to 19,000 connections, lifeline::Server against
// a plain epoll loop writing the same bytes to the same number of sockets, side
// by side in one run (docs/BENCHMARKS.md, "Broadcast to 19,000 connections").
//
// One binary, four roles, each its own process (a process here may hold at
// most 20,000 descriptors, so the server and its clients cannot share one):
//
//   driver (default)      starts the others, runs the rounds, measures, prints
//   --role server         --kind lifeline | lifeline-uring | plain
//   --role client         --mode framed | raw: holds the N connections
//   (perf stat)           counts the server's system calls, started per window
//
// Per server kind and repetition: the server starts, the client opens N
// connections at random moments within a ramp (framed: ClientSession with a
// device-like UUID id, HELLO/WELCOME, then PINGs on its own phase for the rest
// of the run; raw: the same program decoding the same DATA frames, no
// handshake, no heartbeats), then two windows of equal length are measured on
// the server process: an idle one (heartbeats only) and a broadcast one of K
// rounds, one every --slot-ms. A round is "b r" to the server, which takes
// the time and calls Server::broadcast (plain: one send() per socket), and it
// ends when the client has seen round r's DATA frame on every connection: the
// round's time is that last delivery minus the server's timestamp before the
// call (CLOCK_MONOTONIC in both processes). What the idle window cost per
// second is subtracted from the broadcast window (the "net" figures), so the
// heartbeats' own CPU time and system calls are not charged to the broadcast.
//
// Every wait is bounded; children die with the driver (PR_SET_PDEATHSIG) and
// are killed on every exit path; traffic is on 127.0.0.1 only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/timing_wheel.hpp"
#include "lifeline/server.hpp"

namespace lifeline::bench {
namespace {

using nlohmann::json;

// ---- Shared by every role --------------------------------------------------

std::int64_t mono_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void sleep_until_ns(std::int64_t t) {
    while (true) {
        const std::int64_t left = t - mono_ns();
        if (left <= 0) return;
        std::this_thread::sleep_for(std::chrono::nanoseconds(left));
    }
}

// The soft descriptor limit raised to the hard one; returns the limit in force.
std::uint64_t raise_fd_limit() {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &r);
        ::getrlimit(RLIMIT_NOFILE, &r);
    }
    return static_cast<std::uint64_t>(r.rlim_cur);
}

// Round r's payload: r as a little-endian u64, then filler; `size` >= 8.
std::vector<std::uint8_t> make_payload(std::uint64_t round, std::size_t size) {
    std::vector<std::uint8_t> p(std::max<std::size_t>(size, 8));
    std::memcpy(p.data(), &round, sizeof(round));
    for (std::size_t i = 8; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>('a' + i % 26);
    return p;
}

std::optional<std::uint64_t> round_of(std::span<const std::uint8_t> payload) {
    if (payload.size() < 8) return std::nullopt;
    std::uint64_t r = 0;
    std::memcpy(&r, payload.data(), sizeof(r));
    return r;
}

void write_all(int fd, const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // The reader is gone; its owner notices.
        done += static_cast<std::size_t>(n);
    }
}

void say(const std::string& line) { write_all(STDOUT_FILENO, line + "\n"); }

std::vector<std::string> words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

// Lines from a pipe, each wait bounded by a deadline (CLOCK_MONOTONIC ns).
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}
    bool eof() const { return eof_ && buf_.find('\n') == std::string::npos; }
    // The next whole line, or nullopt at the deadline or at end of file.
    std::optional<std::string> next(std::int64_t deadline) {
        while (true) {
            if (const std::size_t nl = buf_.find('\n'); nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return line;
            }
            if (eof_) return std::nullopt;
            const std::int64_t left = deadline - mono_ns();
            if (left <= 0) return std::nullopt;
            pollfd p{fd_, POLLIN, 0};
            const int r = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left / 1'000'000 + 1, 1000)));
            if (r < 0 && errno != EINTR) return std::nullopt;
            if (r <= 0) continue;
            char chunk[4096];
            const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) {
                eof_ = true;
                continue;
            }
            buf_.append(chunk, static_cast<std::size_t>(n));
        }
    }
    // Drains what is there without blocking; whole lines only.
    std::vector<std::string> ready_lines() {
        std::vector<std::string> out;
        while (true) {
            pollfd p{fd_, POLLIN, 0};
            if (eof_ || ::poll(&p, 1, 0) <= 0) break;
            char chunk[4096];
            const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
            if (n <= 0) {
                if (n == 0) eof_ = true;
                break;
            }
            buf_.append(chunk, static_cast<std::size_t>(n));
        }
        for (std::size_t nl; (nl = buf_.find('\n')) != std::string::npos;) {
            out.push_back(buf_.substr(0, nl));
            buf_.erase(0, nl + 1);
        }
        return out;
    }

private:
    int fd_;
    std::string buf_;
    bool eof_ = false;
};

struct Options {
    // Driver.
    int connections = 19'000;
    int rounds = 20;
    int slot_ms = 1000;
    int payload = 64;
    // 5 s (timeout 15 s), as bench/scale.sh's 100,000: at 1 s, 19,000 connections on
    // this loaded 2-core VM lost connections to false deaths (loopback backlog drops
    // and TCP's retransmission backoff: docs/BENCHMARKS.md).
    int heartbeat_ms = 5000;
    int ramp_ms = 0;   // 0: a whole number of heartbeats, at about 6,000 connects a second.
    int sources = 16;  // Client source addresses 127.0.0.2 ...
    int repeat = 1;
    int round_timeout_ms = 5000;
    int max_seconds = 1200;
    std::vector<std::string> servers{"lifeline", "plain"};
    bool perf = true;
    bool pin = true;
    std::string json_out;
    std::uint64_t seed = 1;
    // Children.
    std::string role = "driver";
    std::string kind;
    std::string mode = "framed";
    int port = 0;
};

// ---- Server: lifeline::Server ------------------------------------------------

int run_lifeline_server(const Options& o) {
    raise_fd_limit();
    const std::int64_t give_up = mono_ns() + std::int64_t{o.max_seconds} * 1'000'000'000;
    ServerOptions so;
    so.listen = "127.0.0.1:0";
    so.mode = ServerMode::framed;
    so.io = o.kind == "lifeline-uring" ? IoBackend::uring : IoBackend::epoll;
    so.threads = 1;
    so.heartbeat = Duration::milliseconds(o.heartbeat_ms);
    so.timeout = Duration::milliseconds(3 * std::int64_t{o.heartbeat_ms});
    so.handshake_timeout = Duration::seconds(30);
    so.max_connections = static_cast<std::size_t>(o.connections) + 100;

    std::atomic<std::uint64_t> opened{0}, closed{0};
    std::mutex marker_mutex;
    ConnectionId marker{};  // Any open connection: a post() to it runs after the broadcast on the same loop.
    ServerCallbacks cb;
    cb.on_open = [&](ConnectionId conn) {
        opened.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(marker_mutex);
        if (!marker) marker = conn;
    };
    cb.on_close = [&](ConnectionId conn, DisconnectReason, const std::string&) {
        closed.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(marker_mutex);
        if (marker == conn) marker = ConnectionId{};
    };
    std::atomic<int> logged{0};
    cb.on_event = [&](const Event& e) {
        if (e.kind != EventKind::dead && e.kind != EventKind::error && e.kind != EventKind::stall) return;
        if (logged.fetch_add(1) >= 5) return;
        std::fprintf(stderr, "broadcast_bench server: %s conn %llu %s silence %lld ms budget %lld ms: %s\n",
                     std::string(to_string(e.kind)).c_str(), static_cast<unsigned long long>(e.conn),
                     e.reason ? std::string(to_string(*e.reason)).c_str() : "", static_cast<long long>(e.silence.ms()),
                     static_cast<long long>(e.budget.ms()), e.message.c_str());
    };
    auto created = Server::create(so, std::move(cb));
    if (!created) {
        say("error " + created.error().message);
        return 1;
    }
    Server& server = **created;
    std::thread loop([&] { server.run(); });
    const std::string addr = server.local_address();
    say("port " + addr.substr(addr.rfind(':') + 1));

    LineReader in(STDIN_FILENO);
    while (mono_ns() < give_up) {
        std::optional<std::string> line = in.next(give_up);
        if (!line) break;
        const std::vector<std::string> w = words(*line);
        if (w.empty()) continue;
        if (w[0] == "q") break;
        if (w[0] == "n") {
            const std::uint64_t c = closed.load();
            say("n " + std::to_string(opened.load() - c) + " " + std::to_string(c));
        } else if (w[0] == "m") {  // Two of the server's own counters, from its /metrics text.
            const std::string text = server.metrics_text();
            const auto metric = [&](const std::string& name) {
                const std::size_t at = text.find("\n" + name + " ");
                return at == std::string::npos ? std::string("-") : words(text.substr(at + name.size() + 2, 32))[0];
            };
            say("m " + metric("lifeline_broadcast_dropped_total") + " " + metric("lifeline_loop_stalls_total"));
        } else if (w[0] == "b" && w.size() == 2) {
            const std::uint64_t round = std::stoull(w[1]);
            const std::vector<std::uint8_t> payload = make_payload(round, static_cast<std::size_t>(o.payload));
            const std::int64_t t0 = mono_ns();
            const std::size_t loops = server.broadcast(payload);
            const std::int64_t t1 = mono_ns();
            // When the loop has written the frame to every connection: a task
            // posted after the broadcast runs after it, on the same loop.
            ConnectionId m;
            {
                std::lock_guard lock(marker_mutex);
                m = marker;
            }
            auto done = std::make_shared<std::promise<std::int64_t>>();
            std::future<std::int64_t> written = done->get_future();
            std::int64_t tw = 0;
            if (m && server.post(m, [done] { done->set_value(mono_ns()); })) {
                if (written.wait_for(std::chrono::seconds(10)) == std::future_status::ready) tw = written.get();
            }
            say("t " + std::to_string(round) + " " + std::to_string(t0) + " " + std::to_string(t1) + " " +
                std::to_string(tw) + " " + std::to_string(loops));
        }
    }
    server.stop();
    loop.join();
    return 0;
}

// ---- Server: the plain epoll baseline ------------------------------------------

// What a hand-written broadcaster does: one level-triggered epoll loop, the
// accepted sockets in a vector, and per broadcast one send() of the same
// encoded DATA frame to each. No protocol (no HELLO, no heartbeats answered),
// no timers, no per-connection state beyond the descriptor; TCP_NODELAY as
// lifeline sets it.
int run_plain_server(const Options& o) {
    raise_fd_limit();
    const std::int64_t give_up = mono_ns() + std::int64_t{o.max_seconds} * 1'000'000'000;
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(lfd, SOMAXCONN) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen) != 0) {
        say(std::string("error listen: ") + std::strerror(errno));
        return 1;
    }
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    constexpr std::uint64_t kListen = ~std::uint64_t{0}, kControl = kListen - 1;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListen;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.u64 = kControl;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
    say("port " + std::to_string(ntohs(a.sin_port)));

    std::vector<int> fds;  // By index; -1 once closed.
    std::uint64_t open = 0, closed = 0, short_writes_total = 0;
    std::string control;
    std::vector<epoll_event> events(1024);
    std::vector<std::uint8_t> frame;
    std::array<std::uint8_t, 4096> sink{};
    bool quit = false;
    while (!quit && mono_ns() < give_up) {
        const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
        for (int i = 0; i < n; ++i) {
            const epoll_event& e = events[static_cast<std::size_t>(i)];
            if (e.data.u64 == kListen) {
                while (true) {
                    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    epoll_event cev{};
                    cev.events = EPOLLIN;
                    cev.data.u64 = fds.size();
                    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                    fds.push_back(fd);
                    ++open;
                }
            } else if (e.data.u64 == kControl) {
                char chunk[512];
                const ssize_t r = ::read(STDIN_FILENO, chunk, sizeof(chunk));
                if (r <= 0) {
                    quit = true;
                    break;
                }
                control.append(chunk, static_cast<std::size_t>(r));
                for (std::size_t nl; (nl = control.find('\n')) != std::string::npos;) {
                    const std::vector<std::string> w = words(control.substr(0, nl));
                    control.erase(0, nl + 1);
                    if (w.empty()) continue;
                    if (w[0] == "q") {
                        quit = true;
                    } else if (w[0] == "n") {
                        say("n " + std::to_string(open) + " " + std::to_string(closed));
                    } else if (w[0] == "m") {
                        say("m " + std::to_string(short_writes_total) + " -");
                    } else if (w[0] == "b" && w.size() == 2) {
                        const std::uint64_t round = std::stoull(w[1]);
                        const std::vector<std::uint8_t> payload =
                            make_payload(round, static_cast<std::size_t>(o.payload));
                        const std::int64_t t0 = mono_ns();
                        frame.clear();
                        (void)append_frame(frame, Data{payload});
                        std::uint64_t short_writes = 0;  // Never expected: 69 bytes into an idle socket.
                        for (const int fd : fds) {
                            if (fd < 0) continue;
                            const ssize_t w_n = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                            if (w_n != static_cast<ssize_t>(frame.size())) ++short_writes;
                        }
                        short_writes_total += short_writes;
                        const std::int64_t t1 = mono_ns();
                        say("t " + std::to_string(round) + " " + std::to_string(t0) + " " + std::to_string(t1) + " " +
                            std::to_string(t1) + " " + std::to_string(short_writes));
                    }
                }
            } else {
                const std::size_t idx = static_cast<std::size_t>(e.data.u64);
                const int fd = fds[idx];
                if (fd < 0) continue;
                const ssize_t r = ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    ::close(fd);
                    fds[idx] = -1;
                    --open;
                    ++closed;
                }
            }
        }
    }
    for (const int fd : fds)
        if (fd >= 0) ::close(fd);
    ::close(lfd);
    ::close(ep);
    return 0;
}

// ---- Client: holds the N connections -------------------------------------------

// A device-like id: a random version-4 UUID.
std::string uuid(std::mt19937_64& rng) {
    const std::uint64_t hi = (rng() & ~std::uint64_t{0xF000}) | 0x4000;
    const std::uint64_t lo = (rng() & ~(std::uint64_t{3} << 62)) | (std::uint64_t{2} << 62);
    char s[40];
    std::snprintf(s, sizeof(s), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                  static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                  static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
    return s;
}

struct ClientConn final : TimerNode {
    enum class State : std::uint8_t { waiting, connecting, open, closed };
    int fd = -1;
    std::uint32_t index = 0;
    State state = State::waiting;
    bool out_watched = false;
    bool was_opened = false;  // Framed: WELCOME came; raw: connected.
    std::uint8_t attempts = 0;
    std::uint64_t last_round = 0;
    std::int64_t start_at = 0;
    ClientSessionConfig config;  // Per connection: it holds the id.
    std::unique_ptr<ClientSession> session;
    std::unique_ptr<FrameDecoder> decoder;
    std::vector<std::uint8_t> pending;
};

class ClientProcess {
public:
    explicit ClientProcess(const Options& o)
        : o_(o),
          framed_(o.mode == "framed"),
          n_(static_cast<std::size_t>(o.connections)),
          wheel_(Instant::from_ns(mono_ns()), TimingWheelConfig{Duration::milliseconds(1)}) {}

    int run() {
        const std::uint64_t limit = raise_fd_limit();
        if (limit < n_ + 16) {
            say("error descriptor limit " + std::to_string(limit) + " is below " + std::to_string(n_ + 16));
            return 1;
        }
        const std::int64_t t_begin = mono_ns();
        const std::int64_t give_up = t_begin + std::int64_t{o_.max_seconds} * 1'000'000'000;
        std::mt19937_64 rng(o_.seed);
        const std::int64_t ramp = std::int64_t{std::max(o_.ramp_ms, 1)} * 1'000'000;
        std::uniform_int_distribution<std::int64_t> when(0, ramp - 1);
        conns_.reserve(n_);
        for (std::size_t i = 0; i < n_; ++i) {
            auto c = std::make_unique<ClientConn>();
            c->index = static_cast<std::uint32_t>(i);
            c->start_at = t_begin + when(rng);
            c->config.framed = true;
            c->config.heartbeat = Duration::milliseconds(o_.heartbeat_ms);
            c->config.timeout = Duration::milliseconds(3 * std::int64_t{o_.heartbeat_ms});
            c->config.handshake_timeout = Duration::seconds(30);
            c->config.id = uuid(rng);
            conns_.push_back(std::move(c));
        }
        order_.resize(n_);
        for (std::size_t i = 0; i < n_; ++i) order_[i] = static_cast<std::uint32_t>(i);
        std::sort(order_.begin(), order_.end(),
                  [&](std::uint32_t a, std::uint32_t b) { return conns_[a]->start_at < conns_[b]->start_at; });
        const std::size_t max_round = static_cast<std::size_t>(o_.rounds) + 1;
        count_.assign(max_round, 0);
        first_.assign(max_round, 0);
        median_.assign(max_round, 0);
        last_.assign(max_round, 0);

        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = kControl;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
        std::vector<epoll_event> events(1024);
        std::size_t next_start = 0;
        while (!quit_ && mono_ns() < give_up) {
            std::int64_t now = mono_ns();
            for (int started = 0; next_start < n_ && conns_[order_[next_start]]->start_at <= now && started < 512;
                 ++started)
                start(*conns_[order_[next_start++]], now);
            while (!retries_.empty() && retries_.front().first <= now) {
                ClientConn& c = *conns_[retries_.front().second];
                retries_.erase(retries_.begin());
                start(c, now);
            }
            wheel_.advance(Instant::from_ns(now), [&](TimerNode& node) {
                ClientConn& c = static_cast<ClientConn&>(node);
                if (c.state != ClientConn::State::open || !c.session) return;
                c.session->handle_timeout(Instant::from_ns(now));
                pump(c, now);
            });
            std::int64_t wake = now + 100'000'000;
            if (next_start < n_) wake = std::min(wake, conns_[order_[next_start]]->start_at);
            if (!retries_.empty()) wake = std::min(wake, retries_.front().first);
            if (const Instant next = wheel_.next_expiry(); !next.is_never())
                wake = std::min(wake, next.ns_since_epoch());
            const int timeout = wake <= now ? 0 : static_cast<int>((wake - now + 999'999) / 1'000'000);
            const int n = ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), timeout);
            now = mono_ns();
            for (int i = 0; i < n && !quit_; ++i) {
                const epoll_event& e = events[static_cast<std::size_t>(i)];
                if (e.data.u32 == kControl) {
                    control(now);
                } else {
                    on_io(*conns_[e.data.u32], e.events, now);
                }
            }
            check_ready();
        }
        for (auto& c : conns_) {
            if (c->armed()) wheel_.cancel(*c);
            if (c->fd >= 0) ::close(c->fd);
        }
        ::close(ep_);
        return 0;
    }

private:
    static constexpr std::uint32_t kControl = ~std::uint32_t{0};

    void start(ClientConn& c, std::int64_t now) {
        ++c.attempts;
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) return failed(c, now);
        const int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        // From 127.0.0.2 ... 127.0.0.(1 + sources), the port left to connect():
        // with all of them from one address, connect()'s search for a free
        // ephemeral port (__inet_check_established on every taken one) made
        // the last thousands of connects cost milliseconds each, seconds in
        // all, long enough for the first connections' heartbeats to time out.
        ::setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        sockaddr_in src{};
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + c.index % static_cast<std::uint32_t>(o_.sources));
        if (::bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) return failed(c, now);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<std::uint16_t>(o_.port));
        if (::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno != EINPROGRESS)
            return failed(c, now);
        c.state = ClientConn::State::connecting;
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u32 = c.index;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
    }

    // A connect that failed: again in 200 ms, at most 5 attempts.
    void failed(ClientConn& c, std::int64_t now) {
        if (c.fd >= 0) ::close(c.fd);
        c.fd = -1;
        c.state = ClientConn::State::waiting;
        if (c.attempts < 5) {
            retries_.emplace_back(now + 200'000'000, c.index);
        } else {
            c.state = ClientConn::State::closed;
            ++connect_failures_;
        }
    }

    void lost(ClientConn& c) {
        if (c.state == ClientConn::State::closed) return;
        const bool was_open = c.was_opened;
        c.state = ClientConn::State::closed;
        if (c.armed()) wheel_.cancel(c);
        if (c.fd >= 0) ::close(c.fd);
        c.fd = -1;
        if (was_open) {
            ++lost_;
        } else {
            ++connect_failures_;
        }
    }

    void on_io(ClientConn& c, std::uint32_t events, std::int64_t now) {
        if (c.state == ClientConn::State::connecting) {
            int err = 0;
            socklen_t len = sizeof(err);
            ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) return failed(c, now);
            c.state = ClientConn::State::open;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u32 = c.index;
            ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
            if (framed_) {
                c.session = std::make_unique<ClientSession>(c.config, Instant::from_ns(now));
                pump(c, now);
            } else {
                c.decoder = std::make_unique<FrameDecoder>(DecoderRole::any);
                c.was_opened = true;
                ++opened_;
            }
            return;
        }
        if (c.state != ClientConn::State::open) return;
        if ((events & EPOLLOUT) != 0 && !c.pending.empty()) flush(c, now);
        if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) == 0) return;
        const ssize_t n = ::recv(c.fd, buf_.data(), buf_.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) return lost(c);
        std::span<const std::uint8_t> bytes(buf_.data(), static_cast<std::size_t>(n));
        if (framed_) {
            c.session->receive(bytes, Instant::from_ns(now));
            pump(c, now);
            return;
        }
        while (true) {
            FrameDecoder::Step step = c.decoder->next(bytes);
            if (step.error) return lost(c);
            if (!step.frame) break;
            if (const Data* d = std::get_if<Data>(&*step.frame)) deliver(c, d->payload);
        }
    }

    // What the session has to send and to say, then its next timer.
    void pump(ClientConn& c, std::int64_t now) {
        while (std::optional<Transmit> t = c.session->poll_transmit()) send_bytes(c, t->bytes, now);
        while (std::optional<SessionEvent> e = c.session->poll_event()) {
            switch (e->kind) {
                case SessionEventKind::opened:
                    c.was_opened = true;
                    ++opened_;
                    break;
                case SessionEventKind::message:
                    deliver(c, e->payload);
                    break;
                case SessionEventKind::closed:
                    if (c.was_opened && lost_ < 3 && !finished_)  // Not the shutdown's CLOSEs.
                        std::fprintf(stderr, "broadcast_bench client: connection %u closed: %s (%s)\n", c.index,
                                     std::string(to_string(e->reason)).c_str(), e->message.c_str());
                    lost(c);
                    return;
                default:
                    break;
            }
        }
        if (c.state != ClientConn::State::open) return;
        const Instant next = c.session->next_timeout();
        if (next.is_never()) {
            if (c.armed()) wheel_.cancel(c);
        } else {
            wheel_.schedule(c, next);
        }
    }

    void send_bytes(ClientConn& c, std::span<const std::uint8_t> bytes, std::int64_t now) {
        if (c.fd < 0 || bytes.empty()) return;
        if (!c.pending.empty()) {
            c.pending.insert(c.pending.end(), bytes.begin(), bytes.end());
            return;
        }
        const ssize_t n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) return;  // The read side reports it.
        const std::size_t done = n > 0 ? static_cast<std::size_t>(n) : 0;
        if (done > 0 && c.session) c.session->on_sent(Instant::from_ns(now));
        if (done == bytes.size()) return;
        c.pending.assign(bytes.begin() + static_cast<std::ptrdiff_t>(done), bytes.end());
        watch_out(c, true);
    }

    void flush(ClientConn& c, std::int64_t now) {
        const ssize_t n = ::send(c.fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        c.pending.erase(c.pending.begin(), c.pending.begin() + n);
        if (c.session) c.session->on_sent(Instant::from_ns(now));
        if (c.pending.empty()) watch_out(c, false);
    }

    void watch_out(ClientConn& c, bool on) {
        if (c.out_watched == on) return;
        c.out_watched = on;
        epoll_event ev{};
        ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
        ev.data.u32 = c.index;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    }

    void deliver(ClientConn& c, std::span<const std::uint8_t> payload) {
        const std::optional<std::uint64_t> r = round_of(payload);
        if (!r || *r == 0 || *r >= count_.size()) {
            ++anomalies_;
            return;
        }
        if (*r != c.last_round + 1) ++anomalies_;  // A round lost, repeated or out of order.
        if (*r <= c.last_round) return;
        c.last_round = *r;
        const std::size_t k = static_cast<std::size_t>(*r);
        const std::uint64_t got = ++count_[k];
        if (got == 1) first_[k] = mono_ns();
        if (got == (expected_ + 1) / 2) median_[k] = mono_ns();
        if (got == expected_) {
            last_[k] = mono_ns();
            report_round(k);
        }
    }

    void report_round(std::size_t k) {
        say("r " + std::to_string(k) + " " + std::to_string(first_[k]) + " " + std::to_string(median_[k]) + " " +
            std::to_string(last_[k]) + " " + std::to_string(count_[k]));
    }

    void check_ready() {
        // Every connection resolved: open (perhaps lost since), or failed for good.
        if (ready_sent_ || opened_ + connect_failures_ < n_) return;
        ready_sent_ = true;
        expected_ = opened_ - lost_;
        say("ready " + std::to_string(expected_) + " " + std::to_string(connect_failures_ + lost_));
    }

    void control(std::int64_t) {
        char chunk[512];
        const ssize_t r = ::read(STDIN_FILENO, chunk, sizeof(chunk));
        if (r <= 0) {
            quit_ = true;
            return;
        }
        control_.append(chunk, static_cast<std::size_t>(r));
        for (std::size_t nl; (nl = control_.find('\n')) != std::string::npos;) {
            const std::vector<std::string> w = words(control_.substr(0, nl));
            control_.erase(0, nl + 1);
            if (w.empty()) continue;
            if (w[0] == "q") {
                quit_ = true;
            } else if (w[0] == "p" && w.size() == 2) {  // A round that did not complete: how far it got.
                const std::size_t k = std::min<std::size_t>(std::stoul(w[1]), count_.size() - 1);
                report_round(k);
            } else if (w[0] == "s") {  // The driver's last question: what follows is the shutdown.
                finished_ = true;
                say("s " + std::to_string(opened_) + " " + std::to_string(lost_) + " " + std::to_string(anomalies_));
            }
        }
    }

    const Options& o_;
    const bool framed_;
    const std::size_t n_;
    TimingWheel wheel_;
    int ep_ = -1;
    std::vector<std::unique_ptr<ClientConn>> conns_;
    std::vector<std::uint32_t> order_;
    std::vector<std::pair<std::int64_t, std::uint32_t>> retries_;
    std::vector<std::uint64_t> count_;
    std::vector<std::int64_t> first_, median_, last_;
    std::array<std::uint8_t, 65536> buf_{};
    std::string control_;
    std::uint64_t opened_ = 0, lost_ = 0, connect_failures_ = 0, anomalies_ = 0, expected_ = 0;
    bool ready_sent_ = false;
    bool quit_ = false;
    bool finished_ = false;
};

// ---- Driver ---------------------------------------------------------------------

// Children to kill on any exit (a signal handler reads this: fixed storage).
constexpr int kMaxChildren = 8;
volatile pid_t g_children[kMaxChildren] = {};

void register_child(pid_t pid) {
    for (auto& slot : g_children)
        if (slot == 0) {
            slot = pid;
            return;
        }
}
void forget_child(pid_t pid) {
    for (auto& slot : g_children)
        if (slot == pid) slot = 0;
}
void kill_children() {
    for (auto& slot : g_children)
        if (slot > 0) {
            ::kill(slot, SIGKILL);
            ::waitpid(slot, nullptr, 0);
            slot = 0;
        }
}
// The scratch directory and the perf files in flight, for the signal handler
// to remove (unlink and rmdir are async-signal-safe; the rest is gone by then).
char g_scratch[256] = {};
char g_perf_files[2][320] = {};
void remember(char* slot, std::size_t size, const std::string& path) { std::snprintf(slot, size, "%s", path.c_str()); }
extern "C" void on_fatal_signal(int sig) {
    kill_children();
    for (const char* f : g_perf_files)
        if (f[0] != 0) ::unlink(f);
    if (g_scratch[0] != 0) ::rmdir(g_scratch);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

struct Child {
    pid_t pid = -1;
    int to = -1;  // Its stdin.
    std::unique_ptr<LineReader> from;
    int from_fd = -1;

    void send(const std::string& line) const { write_all(to, line + "\n"); }
    // Waits for a line starting with `word` (others are dropped).
    std::optional<std::vector<std::string>> expect(const std::string& word, std::int64_t deadline,
                                                   const std::string& second = "") {
        while (true) {
            std::optional<std::string> line = from->next(deadline);
            if (!line) return std::nullopt;
            std::vector<std::string> w = words(*line);
            if (!w.empty() && w[0] == "error") {
                std::fprintf(stderr, "broadcast_bench: child %d: %s\n", pid, line->c_str());
                return std::nullopt;
            }
            if (!w.empty() && w[0] == word && (second.empty() || (w.size() > 1 && w[1] == second))) return w;
        }
    }
    // Asks it to quit; SIGKILL after `grace_ms`.
    void stop(int grace_ms) {
        if (pid <= 0) return;
        if (to >= 0) {
            send("q");
            ::close(to);
            to = -1;
        }
        const std::int64_t until = mono_ns() + std::int64_t{grace_ms} * 1'000'000;
        int status = 0;
        while (::waitpid(pid, &status, WNOHANG) == 0) {
            if (mono_ns() > until) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        forget_child(pid);
        pid = -1;
        if (from_fd >= 0) ::close(from_fd);
        from_fd = -1;
    }
};

std::string self_exe() {
    std::error_code ec;
    return std::filesystem::read_symlink("/proc/self/exe", ec).string();
}

// Forks and execs `argv`, stdin and stdout through pipes, pinned to `cpu` (>= 0).
Child spawn(const std::vector<std::string>& argv, int cpu) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return {};
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(static_cast<std::size_t>(cpu), &set);
            ::sched_setaffinity(0, sizeof(set), &set);
        }
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    Child c;
    c.pid = pid;
    c.to = in[1];
    c.from_fd = out[0];
    c.from = std::make_unique<LineReader>(out[0]);
    if (pid > 0) register_child(pid);
    return c;
}

// CPU time of a process (every thread): the scheduler's nanoseconds, and the
// user/system split from /proc/PID/stat (clock ticks).
struct CpuSample {
    double total_s = 0, user_s = 0, sys_s = 0;
};
CpuSample cpu_of(pid_t pid) {
    CpuSample s;
    std::error_code ec;
    for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        std::ifstream f(t.path() / "schedstat");
        double ns = 0;
        if (f >> ns) s.total_s += ns / 1e9;
    }
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const std::size_t close_paren = all.rfind(')');
    if (close_paren != std::string::npos) {
        const std::vector<std::string> w = words(all.substr(close_paren + 2));
        // Fields 14 and 15 of stat are utime and stime; w[0] is field 3.
        if (w.size() > 12) {
            const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
            s.user_s = std::stod(w[11]) / tick;
            s.sys_s = std::stod(w[12]) / tick;
        }
    }
    return s;
}

long rss_kib(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

std::string loadavg() {
    std::ifstream f("/proc/loadavg");
    std::string a, b, c;
    f >> a >> b >> c;
    return a + " " + b + " " + c;
}

// perf stat counting the system calls of one process, started disabled and
// switched on and off through its control pipe, so a window counts exactly
// what lies between enable and disable.
class PerfCounter {
public:
    static const std::vector<std::string>& events() {
        static const std::vector<std::string> e{
            "raw_syscalls:sys_enter",          "syscalls:sys_enter_sendto",   "syscalls:sys_enter_write",
            "syscalls:sys_enter_read",         "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_epoll_wait",
            "syscalls:sys_enter_epoll_ctl",    "syscalls:sys_enter_futex",    "syscalls:sys_enter_io_uring_enter",
            "syscalls:sys_enter_clock_gettime"};
        return e;
    }

    bool start(pid_t target, const std::string& out_file) {
        out_ = out_file;
        remember(g_perf_files[0], sizeof(g_perf_files[0]), out_file);
        remember(g_perf_files[1], sizeof(g_perf_files[1]), out_file + ".err");
        int ctl[2], ack[2];
        if (::pipe(ctl) != 0 || ::pipe(ack) != 0) return false;
        std::string ev;
        for (const auto& e : events()) ev += (ev.empty() ? "" : ",") + e;
        const std::vector<std::string> argv{"/usr/bin/perf",
                                            "stat",
                                            "-D",
                                            "-1",
                                            "--control",
                                            "fd:" + std::to_string(ctl[0]) + "," + std::to_string(ack[1]),
                                            "-x,",
                                            "-o",
                                            out_file,
                                            "-e",
                                            ev,
                                            "-p",
                                            std::to_string(target)};
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(1);
            ::close(ctl[1]);
            ::close(ack[0]);
            const int devnull = ::open("/dev/null", O_RDWR);
            ::dup2(devnull, STDIN_FILENO);
            ::dup2(devnull, STDOUT_FILENO);
            // Its "Events enabled" chatter (and any error) to a file beside the counts.
            const int err = ::open((out_file + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (err >= 0) ::dup2(err, STDERR_FILENO);
            std::vector<char*> args;
            for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
        ::close(ctl[0]);
        ::close(ack[1]);
        ctl_ = ctl[1];
        ack_ = std::make_unique<LineReader>(ack[0]);
        ack_fd_ = ack[0];
        if (pid_ < 0) return false;
        register_child(pid_);
        return true;
    }
    bool enable() { return command("enable"); }
    bool disable() { return command("disable"); }
    // Stops perf and reads its counts (event -> count); empty if it failed.
    std::map<std::string, double> finish() {
        std::map<std::string, double> counts;
        if (pid_ <= 0) return counts;
        ::kill(pid_, SIGINT);
        const std::int64_t until = mono_ns() + 5'000'000'000;
        while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
            if (mono_ns() > until) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, nullptr, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        forget_child(pid_);
        pid_ = -1;
        ::close(ctl_);
        ::close(ack_fd_);
        std::ifstream f(out_);
        for (std::string line; std::getline(f, line);) {
            std::vector<std::string> fields;
            std::stringstream ss(line);
            for (std::string x; std::getline(ss, x, ',');) fields.push_back(x);
            if (fields.size() < 3 || fields[0].empty() || fields[0][0] == '#') continue;
            const double v = std::isdigit(static_cast<unsigned char>(fields[0][0])) ? std::stod(fields[0]) : 0.0;
            counts[fields[2]] += v;
        }
        f.close();
        ::unlink(out_.c_str());
        ::unlink((out_ + ".err").c_str());
        g_perf_files[0][0] = g_perf_files[1][0] = 0;
        return counts;
    }

private:
    bool command(const char* what) {
        write_all(ctl_, std::string(what) + "\n");
        std::optional<std::string> a = ack_->next(mono_ns() + 10'000'000'000);
        // perf writes "ack\n" with its terminating NUL, which starts the next line.
        return a && a->find("ack") != std::string::npos;
    }
    pid_t pid_ = -1;
    int ctl_ = -1, ack_fd_ = -1;
    std::unique_ptr<LineReader> ack_;
    std::string out_;
};

struct Window {
    double wall_s = 0;
    CpuSample server, client;
    std::map<std::string, double> syscalls;  // Empty without perf.
};

struct Round {
    std::uint64_t round = 0;
    double last_ms = 0;     // Broadcast call -> last connection received it.
    double median_ms = 0;   // -> half of them had.
    double first_ms = 0;    // -> the first had.
    double call_us = 0;     // Server::broadcast's own return (lifeline: it posts).
    double written_ms = 0;  // -> the server's loop had written it to every socket.
    std::uint64_t delivered = 0;
    bool complete = false;
};

struct Run {
    std::string kind;
    int rep = 0;
    std::string error;
    std::uint64_t connections = 0, connect_failures = 0, lost = 0, anomalies = 0;
    long rss_before_kib = 0, rss_after_kib = 0;
    std::string load_before, load_after;  // /proc/loadavg, first three fields.
    // The server's broadcast_dropped_total, and loop_stalls_total before the idle window and at the end.
    std::string dropped = "-", stalls_before = "-", stalls = "-";
    Window idle, cast;
    std::vector<Round> rounds;
};

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    const std::size_t rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Per delivered message: what the broadcast window cost, gross and net of
// the idle window's rate (scaled to the broadcast window's length).
struct Derived {
    double round_median_ms = NAN, round_p90_ms = NAN, us_per_msg = NAN, written_median_ms = NAN;
    double cpu_us_gross = NAN, cpu_us_net = NAN, client_cpu_us_net = NAN, sys_gross = NAN, sys_net = NAN;
    double user_share = NAN;
    std::map<std::string, double> sys_net_by_call;
    std::uint64_t delivered = 0;
    int complete = 0, misses = 0;
};

Derived derive(const Run& r) {
    Derived d;
    std::vector<double> last, written;
    for (const Round& x : r.rounds) {
        d.delivered += x.delivered;
        if (x.complete) {
            ++d.complete;
            last.push_back(x.last_ms);
            if (x.written_ms > 0) written.push_back(x.written_ms);
        } else {
            ++d.misses;
        }
    }
    if (d.delivered == 0) return d;
    const double msgs = static_cast<double>(d.delivered);
    d.round_median_ms = percentile(last, 0.5);
    d.round_p90_ms = percentile(last, 0.9);
    d.us_per_msg = d.round_median_ms * 1000.0 / static_cast<double>(r.connections);
    d.written_median_ms = percentile(written, 0.5);
    const double scale = r.idle.wall_s > 0 ? r.cast.wall_s / r.idle.wall_s : 1.0;
    d.cpu_us_gross = r.cast.server.total_s / msgs * 1e6;
    d.cpu_us_net = (r.cast.server.total_s - r.idle.server.total_s * scale) / msgs * 1e6;
    d.client_cpu_us_net = (r.cast.client.total_s - r.idle.client.total_s * scale) / msgs * 1e6;
    const double us = r.cast.server.user_s - r.idle.server.user_s * scale;
    const double sy = r.cast.server.sys_s - r.idle.server.sys_s * scale;
    if (us + sy > 0) d.user_share = us / (us + sy);
    if (!r.cast.syscalls.empty()) {
        const auto get = [](const std::map<std::string, double>& m, const std::string& k) {
            const auto it = m.find(k);
            return it == m.end() ? 0.0 : it->second;
        };
        d.sys_gross = get(r.cast.syscalls, "raw_syscalls:sys_enter") / msgs;
        d.sys_net =
            (get(r.cast.syscalls, "raw_syscalls:sys_enter") - get(r.idle.syscalls, "raw_syscalls:sys_enter") * scale) /
            msgs;
        double named = 0;
        for (const auto& e : PerfCounter::events()) {
            if (e == "raw_syscalls:sys_enter") continue;
            const double v = (get(r.cast.syscalls, e) - get(r.idle.syscalls, e) * scale) / msgs;
            d.sys_net_by_call[e.substr(e.find("sys_enter_") + 10)] = v;
            named += v;
        }
        // What no named tracepoint counted.
        d.sys_net_by_call["other"] = d.sys_net - named;
    }
    return d;
}

json to_json(const Run& r) {
    const Derived d = derive(r);
    json rounds = json::array();
    for (const Round& x : r.rounds)
        rounds.push_back({{"round", x.round},
                          {"last_ms", x.last_ms},
                          {"median_ms", x.median_ms},
                          {"first_ms", x.first_ms},
                          {"call_us", x.call_us},
                          {"written_ms", x.written_ms},
                          {"delivered", x.delivered},
                          {"complete", x.complete}});
    const auto window = [](const Window& w) {
        return json{{"wall_s", w.wall_s},
                    {"server_cpu_s", w.server.total_s},
                    {"server_user_s", w.server.user_s},
                    {"server_sys_s", w.server.sys_s},
                    {"client_cpu_s", w.client.total_s},
                    {"syscalls", w.syscalls}};
    };
    const auto num = [](double v) { return std::isnan(v) ? json(nullptr) : json(v); };
    return {{"kind", r.kind},
            {"rep", r.rep},
            {"error", r.error},
            {"connections", r.connections},
            {"connect_failures", r.connect_failures},
            {"lost", r.lost},
            {"anomalies", r.anomalies},
            {"rss_before_kib", r.rss_before_kib},
            {"rss_after_kib", r.rss_after_kib},
            {"load_before", r.load_before},
            {"load_after", r.load_after},
            {"broadcast_dropped", r.dropped},
            {"loop_stalls_before", r.stalls_before},
            {"loop_stalls", r.stalls},
            {"idle", window(r.idle)},
            {"broadcast", window(r.cast)},
            {"rounds", rounds},
            {"summary",
             {{"round_median_ms", num(d.round_median_ms)},
              {"round_p90_ms", num(d.round_p90_ms)},
              {"us_per_delivered_msg", num(d.us_per_msg)},
              {"written_median_ms", num(d.written_median_ms)},
              {"server_cpu_us_per_msg_gross", num(d.cpu_us_gross)},
              {"server_cpu_us_per_msg_net", num(d.cpu_us_net)},
              {"client_cpu_us_per_msg_net", num(d.client_cpu_us_net)},
              {"server_user_share_net", num(d.user_share)},
              {"syscalls_per_msg_gross", num(d.sys_gross)},
              {"syscalls_per_msg_net", num(d.sys_net)},
              {"syscalls_per_msg_net_by_call", d.sys_net_by_call},
              {"complete_rounds", d.complete},
              {"missed_rounds", d.misses},
              {"delivered", d.delivered}}}};
}

class Driver {
public:
    explicit Driver(const Options& o) : o_(o), exe_(self_exe()) {}

    int run() {
        const std::int64_t give_up = mono_ns() + std::int64_t{o_.max_seconds} * 1'000'000'000;
        if (o_.perf && ::access("/usr/bin/perf", X_OK) != 0) {
            std::fprintf(stderr, "broadcast_bench: /usr/bin/perf not found: no system call counts\n");
            perf_ = false;
        }
        char tmpl[] = "/tmp/broadcast_bench.XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) return 1;
        scratch_ = tmpl;
        remember(g_scratch, sizeof(g_scratch), scratch_);
        std::printf(
            "broadcast_bench: %d connections, %d rounds every %d ms, %d-byte payload, heartbeat %d ms, "
            "%d repetition(s), servers:",
            o_.connections, o_.rounds, o_.slot_ms, o_.payload, o_.heartbeat_ms, o_.repeat);
        for (const auto& s : o_.servers) std::printf(" %s", s.c_str());
        std::printf("%s\n", o_.pin ? " (server on CPU 0, client on CPU 1)" : "");
        std::fflush(stdout);
        for (int rep = 0; rep < o_.repeat && mono_ns() < give_up; ++rep) {
            std::vector<std::string> order = o_.servers;
            if (rep % 2 == 1) std::reverse(order.begin(), order.end());  // A B, B A, ...
            for (const auto& kind : order) {
                if (mono_ns() >= give_up) break;
                Run r = one_run(kind, rep);
                print_run(r);
                runs_.push_back(std::move(r));
            }
        }
        std::filesystem::remove_all(scratch_);
        summary();
        if (!o_.json_out.empty()) {
            json all = json::array();
            for (const Run& r : runs_) all.push_back(to_json(r));
            json doc{{"options",
                      {{"connections", o_.connections},
                       {"rounds", o_.rounds},
                       {"slot_ms", o_.slot_ms},
                       {"payload", o_.payload},
                       {"heartbeat_ms", o_.heartbeat_ms},
                       {"repeat", o_.repeat},
                       {"pin", o_.pin}}},
                     {"runs", all}};
            std::ofstream(o_.json_out) << doc.dump(1) << "\n";
            std::printf("raw results: %s\n", o_.json_out.c_str());
        }
        for (const Run& r : runs_)
            if (!r.error.empty()) return 1;
        return 0;
    }

private:
    Window measure_window(pid_t server, pid_t client, const std::function<void()>& body, const std::string& tag) {
        Window w;
        PerfCounter perf;
        bool counting = perf_ && perf.start(server, scratch_ + "/perf-" + tag + ".csv") && perf.enable();
        const CpuSample s0 = cpu_of(server), c0 = cpu_of(client);
        const std::int64_t t0 = mono_ns();
        body();
        const std::int64_t t1 = mono_ns();
        const CpuSample s1 = cpu_of(server), c1 = cpu_of(client);
        if (counting) counting = perf.disable();
        std::map<std::string, double> counts = perf.finish();
        if (counting) w.syscalls = std::move(counts);
        w.wall_s = static_cast<double>(t1 - t0) / 1e9;
        w.server = {s1.total_s - s0.total_s, s1.user_s - s0.user_s, s1.sys_s - s0.sys_s};
        w.client = {c1.total_s - c0.total_s, c1.user_s - c0.user_s, c1.sys_s - c0.sys_s};
        return w;
    }

    Run one_run(const std::string& kind, int rep) {
        Run run;
        run.kind = kind;
        run.rep = rep;
        const bool framed = kind != "plain";
        Child server = spawn({exe_, "--role", "server", "--kind", kind, "--payload", std::to_string(o_.payload),
                              "--connections", std::to_string(o_.connections), "--heartbeat-ms",
                              std::to_string(o_.heartbeat_ms), "--max-seconds", std::to_string(o_.max_seconds)},
                             o_.pin ? 0 : -1);
        Child client;
        const auto fail = [&](const std::string& why) {
            run.error = why;
            client.stop(2000);
            server.stop(5000);
            return run;
        };
        if (server.pid <= 0) return fail("could not start the server");
        const auto port = server.expect("port", mono_ns() + 10'000'000'000);
        if (!port || port->size() < 2) return fail("the server did not start (see its error above)");
        const int ramp = ramp_ms();
        client = spawn({exe_, "--role", "client", "--mode", framed ? "framed" : "raw", "--port", (*port)[1],
                        "--connections", std::to_string(o_.connections), "--rounds", std::to_string(o_.rounds),
                        "--heartbeat-ms", std::to_string(o_.heartbeat_ms), "--ramp-ms", std::to_string(ramp), "--seed",
                        std::to_string(o_.seed + static_cast<std::uint64_t>(rep)), "--max-seconds",
                        std::to_string(o_.max_seconds)},
                       o_.pin ? 1 : -1);
        if (client.pid <= 0) return fail("could not start the client");
        const auto ready = client.expect("ready", mono_ns() + (std::int64_t{ramp} + 60'000) * 1'000'000);
        if (!ready || ready->size() < 3) return fail("the client did not get its connections up in time");
        run.connections = std::stoull((*ready)[1]);
        run.connect_failures = std::stoull((*ready)[2]);
        if (run.connections == 0) return fail("no connection opened");
        // The server's side: every accept done (a connect completes in the backlog, before accept()).
        for (const std::int64_t until = mono_ns() + 10'000'000'000; mono_ns() < until;) {
            server.send("n");
            const auto n = server.expect("n", mono_ns() + 5'000'000'000);
            if (!n) return fail("the server stopped answering");
            if (std::stoull((*n)[1]) >= run.connections) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // Settle: heartbeats in their steady state.
        run.rss_before_kib = rss_kib(server.pid);
        run.load_before = loadavg();
        server.send("m");
        if (const auto m = server.expect("m", mono_ns() + 5'000'000'000); m && m->size() >= 3)
            run.stalls_before = (*m)[2];

        const std::int64_t window_ns = std::int64_t{o_.rounds} * o_.slot_ms * 1'000'000;
        run.idle = measure_window(
            server.pid, client.pid, [&] { sleep_until_ns(mono_ns() + window_ns); },
            kind + "-" + std::to_string(rep) + "-idle");
        bool broken = false;
        run.cast = measure_window(
            server.pid, client.pid,
            [&] {
                const std::int64_t begin = mono_ns();
                for (int k = 1; k <= o_.rounds && !broken; ++k) {
                    const std::int64_t slot = begin + std::int64_t{k - 1} * o_.slot_ms * 1'000'000;
                    sleep_until_ns(slot);
                    Round x;
                    x.round = static_cast<std::uint64_t>(k);
                    const std::string r = std::to_string(k);
                    server.send("b " + r);
                    const auto t = server.expect("t", mono_ns() + 15'000'000'000, r);
                    if (!t || t->size() < 5) {
                        broken = true;
                        break;
                    }
                    const double t0 = std::stod((*t)[2]);
                    x.call_us = (std::stod((*t)[3]) - t0) / 1e3;
                    if (std::stod((*t)[4]) > 0) x.written_ms = (std::stod((*t)[4]) - t0) / 1e6;
                    auto got = client.expect("r", slot + std::int64_t{o_.round_timeout_ms} * 1'000'000, r);
                    if (!got) {  // A miss: ask how far it got.
                        client.send("p " + r);
                        got = client.expect("r", mono_ns() + 5'000'000'000, r);
                    } else {
                        x.complete = true;
                    }
                    if (got && got->size() >= 6) {
                        const auto since = [&](const std::string& v) {
                            const double ns = std::stod(v);
                            return ns > 0 ? (ns - t0) / 1e6 : NAN;
                        };
                        x.first_ms = since((*got)[2]);
                        x.median_ms = since((*got)[3]);
                        x.last_ms = since((*got)[4]);
                        x.delivered = std::stoull((*got)[5]);
                    }
                    run.rounds.push_back(x);
                }
            },
            kind + "-" + std::to_string(rep) + "-cast");
        run.rss_after_kib = rss_kib(server.pid);
        run.load_after = loadavg();
        server.send("m");
        if (const auto m = server.expect("m", mono_ns() + 5'000'000'000); m && m->size() >= 3) {
            run.dropped = (*m)[1];
            run.stalls = (*m)[2];
        }
        client.send("s");
        if (const auto s = client.expect("s", mono_ns() + 5'000'000'000); s && s->size() >= 4) {
            run.lost = std::stoull((*s)[2]);
            run.anomalies = std::stoull((*s)[3]);
        }
        if (broken) run.error = "the server stopped answering during the rounds";
        server.stop(10'000);  // Server first: its side keeps the TIME_WAITs, not the client's ports.
        client.stop(5'000);
        return run;
    }

    // Random connect moments over a whole number of heartbeats (so the phases
    // are uniform), at about 6,000 connects a second.
    int ramp_ms() const {
        if (o_.ramp_ms > 0) return o_.ramp_ms;
        const int needed = o_.connections / 6;
        const int beats = std::max(1, (needed + o_.heartbeat_ms - 1) / o_.heartbeat_ms);
        return beats * o_.heartbeat_ms;
    }

    static std::string fmt(double v, int digits = 2) {
        if (std::isnan(v)) return "-";
        char b[32];
        std::snprintf(b, sizeof(b), "%.*f", digits, v);
        return b;
    }

    void print_run(const Run& r) {
        const Derived d = derive(r);
        std::printf(
            "%-15s rep %d: %s%llu conns, rounds %d/%d, round median %s ms p90 %s ms, written %s ms, "
            "server CPU %s us/msg (gross %s), syscalls %s/msg (gross %s), client CPU %s us/msg, "
            "lost %llu, anomalies %llu, RSS %ld -> %ld KiB, dropped %s, loop stalls %s -> %s, load %s -> %s\n",
            r.kind.c_str(), r.rep, r.error.empty() ? "" : ("ERROR " + r.error + "; ").c_str(),
            static_cast<unsigned long long>(r.connections), d.complete, o_.rounds, fmt(d.round_median_ms).c_str(),
            fmt(d.round_p90_ms).c_str(), fmt(d.written_median_ms).c_str(), fmt(d.cpu_us_net, 3).c_str(),
            fmt(d.cpu_us_gross, 3).c_str(), fmt(d.sys_net, 3).c_str(), fmt(d.sys_gross, 3).c_str(),
            fmt(d.client_cpu_us_net, 3).c_str(), static_cast<unsigned long long>(r.lost),
            static_cast<unsigned long long>(r.anomalies), r.rss_before_kib, r.rss_after_kib, r.dropped.c_str(),
            r.stalls_before.c_str(), r.stalls.c_str(), r.load_before.c_str(), r.load_after.c_str());
        if (!d.sys_net_by_call.empty()) {
            std::printf("%-15s        net syscalls per message:", "");
            for (const auto& [call, v] : d.sys_net_by_call)
                if (std::fabs(v) >= 0.0005) std::printf(" %s %.3f", call.c_str(), v);
            std::printf("\n");
        }
        std::fflush(stdout);
    }

    // Per server kind: the median over the repetitions (min-max in brackets),
    // and each figure's ratio to the plain epoll loop's.
    void summary() {
        struct Col {
            const char* name;
            double Derived::*field;
            int digits;
        };
        const std::vector<Col> cols{{"round median ms", &Derived::round_median_ms, 1},
                                    {"round p90 ms", &Derived::round_p90_ms, 1},
                                    {"us/delivered msg", &Derived::us_per_msg, 2},
                                    {"server done writing, median ms", &Derived::written_median_ms, 1},
                                    {"server CPU us/msg (net)", &Derived::cpu_us_net, 2},
                                    {"server CPU us/msg (gross)", &Derived::cpu_us_gross, 2},
                                    {"syscalls/msg (net)", &Derived::sys_net, 3},
                                    {"syscalls/msg (gross)", &Derived::sys_gross, 3},
                                    {"client CPU us/msg (net)", &Derived::client_cpu_us_net, 2}};
        std::map<std::string, std::vector<Derived>> by_kind;
        for (const Run& r : runs_)
            if (r.error.empty()) by_kind[r.kind].push_back(derive(r));
        const auto med = [](const std::vector<Derived>& ds, double Derived::*f) {
            std::vector<double> v;
            for (const auto& d : ds)
                if (!std::isnan(d.*f)) v.push_back(d.*f);
            return std::make_tuple(percentile(v, 0.5), v.empty() ? NAN : *std::min_element(v.begin(), v.end()),
                                   v.empty() ? NAN : *std::max_element(v.begin(), v.end()));
        };
        std::printf("\nSummary: median over repetitions [min-max]; ratio = this / plain epoll\n");
        std::printf("| figure |");
        for (const auto& k : o_.servers) std::printf(" %s |", k.c_str());
        for (const auto& k : o_.servers)
            if (k != "plain" && by_kind.count("plain")) std::printf(" %s / plain |", k.c_str());
        std::printf("\n|---|");
        for (std::size_t i = 0; i < o_.servers.size(); ++i) std::printf("---:|");
        for (const auto& k : o_.servers)
            if (k != "plain" && by_kind.count("plain")) std::printf("---:|");
        std::printf("\n");
        for (const Col& c : cols) {
            std::printf("| %s |", c.name);
            for (const auto& k : o_.servers) {
                const auto [m, lo, hi] = med(by_kind[k], c.field);
                std::printf(" %s [%s-%s] |", fmt(m, c.digits).c_str(), fmt(lo, c.digits).c_str(),
                            fmt(hi, c.digits).c_str());
            }
            for (const auto& k : o_.servers) {
                if (k == "plain" || !by_kind.count("plain")) continue;
                const double a = std::get<0>(med(by_kind[k], c.field));
                const double b = std::get<0>(med(by_kind["plain"], c.field));
                std::printf(" %s |", b != 0 && !std::isnan(a) && !std::isnan(b) ? (fmt(a / b, 2) + "x").c_str() : "-");
            }
            std::printf("\n");
        }
        int misses = 0;
        for (const auto& [k, ds] : by_kind)
            for (const auto& d : ds) misses += d.misses;
        std::printf("missed rounds (not every connection had it within %d ms): %d\n", o_.round_timeout_ms, misses);
        std::fflush(stdout);
    }

    const Options& o_;
    const std::string exe_;
    std::string scratch_;
    bool perf_ = o_.perf;
    std::vector<Run> runs_;
};

}  // namespace
}  // namespace lifeline::bench

int main(int argc, char** argv) {
    using lifeline::bench::Options;
    Options o;
    CLI::App app{"One message broadcast to N connections: lifeline::Server against a plain epoll loop"};
    app.add_option("-n,--connections", o.connections, "Connections held by the client process")
        ->check(CLI::Range(1, 19'900));
    app.add_option("--rounds", o.rounds, "Broadcast rounds per server")->check(CLI::Range(1, 1000));
    app.add_option("--slot-ms", o.slot_ms, "One round starts every this many ms")->check(CLI::Range(10, 10'000));
    app.add_option("--payload", o.payload, "Payload bytes (>= 8: the round number)")->check(CLI::Range(8, 65'536));
    app.add_option("--heartbeat-ms", o.heartbeat_ms, "Framed clients' heartbeat")->check(CLI::Range(100, 600'000));
    app.add_option("--ramp-ms", o.ramp_ms, "Connect moments spread over this (0: auto)")->check(CLI::Range(0, 600'000));
    app.add_option("--sources", o.sources, "Client source addresses, 127.0.0.2 on")->check(CLI::Range(1, 250));
    app.add_option("--repeat", o.repeat, "Repetitions (server order alternates)")->check(CLI::Range(1, 20));
    app.add_option("--round-timeout-ms", o.round_timeout_ms, "A round not delivered everywhere by then is a miss")
        ->check(CLI::Range(100, 60'000));
    app.add_option("--max-seconds", o.max_seconds, "Bound on the whole run (and on every child)")
        ->check(CLI::Range(10, 7200));
    app.add_option("--servers", o.servers, "lifeline, lifeline-uring, plain")
        ->delimiter(',')
        ->check(CLI::IsMember({"lifeline", "lifeline-uring", "plain"}));
    app.add_flag("!--no-perf", o.perf, "Do not count system calls with perf");
    app.add_flag("!--no-pin", o.pin, "Do not pin the server to CPU 0 and the client to CPU 1");
    app.add_option("--json", o.json_out, "Write every round of every run here");
    app.add_option("--seed", o.seed, "Client ids and connect moments");
    app.add_option("--role", o.role)->group("")->check(CLI::IsMember({"driver", "server", "client"}));
    app.add_option("--kind", o.kind)->group("");
    app.add_option("--mode", o.mode)->group("");
    app.add_option("--port", o.port)->group("");
    CLI11_PARSE(app, argc, argv);

    if (o.role == "server")
        return o.kind == "plain" ? lifeline::bench::run_plain_server(o) : lifeline::bench::run_lifeline_server(o);
    if (o.role == "client") return lifeline::bench::ClientProcess(o).run();
    for (const int sig : {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGABRT}) ::signal(sig, lifeline::bench::on_fatal_signal);
    ::signal(SIGPIPE, SIG_IGN);
    const int rc = lifeline::bench::Driver(o).run();
    lifeline::bench::kill_children();
    return rc;
}
