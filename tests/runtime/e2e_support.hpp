// Shared by the end-to-end tests that run the real `lifeline serve` on
// loopback and misbehave on raw sockets (bad_input_test.cpp,
// backpressure_test.cpp): the server's event log, the healthy client and its
// verdict (expect_healthy), raw-socket and frame helpers. Internal to tests/runtime.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "net/loopback_pair.hpp"
#include "support/child_process.hpp"
#include "support/serve_io.hpp"

namespace lifeline::e2e {

using testing::ChildProcess;
using testing::Fd;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

// The healthy client's timeout: a gap between two heartbeat answers this long
// means it was, by its own rules, about to declare the server dead. Twenty
// heartbeats: only real starvation (the server's loop not running for two
// seconds) crosses it, not a busy shared machine under ASan. How long the gaps
// really are is a benchmark (bench/starvation.sh, docs/BENCHMARKS.md).
constexpr std::int64_t kHealthyTimeoutMs = 2000;

inline void require(bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error(what);
}

inline std::string errno_text(int err) {
    return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

inline std::int64_t ms_between(Steady::time_point a, Steady::time_point b) {
    return std::chrono::duration_cast<milliseconds>(b - a).count();
}

// ---- Event timestamps -----------------------------------------------------------

// Milliseconds since the epoch, as the binaries stamp their events.
inline std::int64_t wall_ms_now() {
    return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "2026-11-22T04:35:31.551Z" -> milliseconds since the epoch; -1 if malformed.
inline std::int64_t event_ms(const Json& e) {
    const std::string ts = e.value("ts", "");
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, milli = 0;
    if (std::sscanf(ts.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &year, &month, &day, &hour, &minute, &second, &milli) != 7)
        return -1;
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    return static_cast<std::int64_t>(::timegm(&tm)) * 1000 + milli;
}

inline std::string kind_of(const Json& e) { return e.value("event", ""); }

// ---- The two processes ----------------------------------------------------------

// The server's events, read from the file its stdout goes to. Not a pipe: the
// server writes each event line synchronously on its loop thread, so a reader
// slower than the server (this test parsing 30,000 lines of a connect storm)
// would block it on a full pipe and stall every connection for the test's
// sake. A file never pushes back, as in production where a log shipper reads
// it. New lines are waited for with inotify, not by sleeping.
class EventLog {
public:
    EventLog() {
        char path[] = "/tmp/lifeline-bad-input-XXXXXX";
        file_ = Fd(::mkstemp(path));
        require(file_.get() >= 0, "mkstemp: " + errno_text(errno));
        path_ = path;
        inotify_ = Fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        require(inotify_.get() >= 0, "inotify_init1: " + errno_text(errno));
        require(::inotify_add_watch(inotify_.get(), path, IN_MODIFY) >= 0, "inotify_add_watch: " + errno_text(errno));
    }
    EventLog(const EventLog&) = delete;
    EventLog& operator=(const EventLog&) = delete;
    ~EventLog() { ::unlink(path_.c_str()); }

    const std::string& path() const { return path_; }

    // The next event not yet returned, or nullopt when none comes within `limit`.
    std::optional<Json> next_event(milliseconds limit) {
        const auto deadline = Steady::now() + limit;
        while (true) {
            if (next_ < events_.size()) return events_[next_++];
            read_appended();
            if (next_ < events_.size()) continue;
            const std::int64_t left = ms_between(Steady::now(), deadline);
            if (left <= 0) return std::nullopt;
            pollfd p{inotify_.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) > 0) {
                char buf[4096];
                while (::read(inotify_.get(), buf, sizeof(buf)) > 0) {
                }
            }
        }
    }

    // Skips events until one matches; returns it, or nullopt at the deadline.
    std::optional<Json> wait_for(const std::function<bool(const Json&)>& match, milliseconds limit) {
        const auto deadline = Steady::now() + limit;
        while (true) {
            const std::int64_t left = ms_between(Steady::now(), deadline);
            if (left <= 0) return std::nullopt;
            std::optional<Json> e = next_event(milliseconds(left));
            if (!e) return std::nullopt;
            if (match(*e)) return e;
        }
    }

    // Every event read so far, including those not yet returned by next_event.
    const std::vector<Json>& events() {
        read_appended();
        return events_;
    }

private:
    void read_appended() {
        char buf[65536];
        while (true) {
            const ssize_t n = ::read(file_.get(), buf, sizeof(buf));
            if (n <= 0) break;
            partial_.append(buf, static_cast<std::size_t>(n));
        }
        std::size_t start = 0;
        for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
            Json j = Json::parse(partial_.begin() + static_cast<std::ptrdiff_t>(start),
                                 partial_.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
            if (!j.is_discarded()) events_.push_back(std::move(j));
        }
        partial_.erase(0, start);
    }

    std::string path_;
    Fd file_;
    Fd inotify_;
    std::string partial_;
    std::vector<Json> events_;
    std::size_t next_ = 0;
};

struct ServerProcess {
    std::unique_ptr<EventLog> log;  // Declared first: outlives the process.
    std::unique_ptr<ChildProcess> proc;
    std::uint16_t port = 0;
};

inline ServerProcess start_server(const std::vector<std::string>& flags, const std::string& shell_prefix = "") {
    std::vector<std::string> argv{LIFELINE_BINARY, "serve", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    for (const std::string& flag : lifeline::testing::serve_io_flags()) argv.push_back(flag);
    ServerProcess s;
    s.log = std::make_unique<EventLog>();
    // The shell execs the server, so the child's pid is the server's.
    s.proc = std::make_unique<ChildProcess>(argv, "exec >'" + s.log->path() + "'; " + shell_prefix);
    const std::optional<Json> listening = s.log->wait_for([](const Json& j) { return kind_of(j) == "listening"; }, 10s);
    require(listening.has_value(), "the server did not report `listening` within 10 s");
    const std::string address = listening->value("address", "");
    s.port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    return s;
}

struct HealthyClient {
    std::unique_ptr<ChildProcess> proc;
    std::uint64_t server_conn = 0;  // The server's number for this connection.
};

// Starts `lifeline connect` and returns once the handshake is done on both
// sides and one heartbeat has been answered.
inline HealthyClient start_healthy(ServerProcess& server) {
    HealthyClient h;
    h.proc = std::make_unique<ChildProcess>(std::vector<std::string>{
        LIFELINE_BINARY, "connect", "127.0.0.1:" + std::to_string(server.port), "--id", "healthy", "--heartbeat",
        "100ms", "--timeout", std::to_string(kHealthyTimeoutMs) + "ms", "--no-stdin"});
    require(h.proc->wait_for_event("hello", 10s).has_value(), "the healthy client got no WELCOME within 10 s");
    const std::optional<Json> hello = server.log->wait_for(
        [](const Json& j) { return kind_of(j) == "hello" && j.value("id", "") == "healthy"; }, 10s);
    require(hello.has_value(), "the server reported no `hello` for the healthy client");
    h.server_conn = (*hello)["conn"].get<std::uint64_t>();
    require(h.proc->wait_for_event("rtt", 5s).has_value(), "the healthy client's first heartbeat got no answer");
    return h;
}

// Checks that the healthy client stayed healthy from `from_ms` (wall clock,
// taken just before the misbehaviour) until a settling period after `to_ms`
// (just after it) that is longer than its timeout, so that a late `dead`
// verdict caused by the misbehaviour would show up too.
inline void expect_healthy(HealthyClient& h, ServerProcess& server, std::int64_t from_ms, std::int64_t to_ms,
                           const std::string& phase) {
    const std::int64_t until_ms = to_ms + kHealthyTimeoutMs + 100;
    const auto limit = milliseconds(std::max<std::int64_t>(0, until_ms - wall_ms_now()) + 3000);
    const std::optional<Json> last = h.proc->wait_for([&](const Json& j) { return event_ms(j) >= until_ms; }, limit);
    EXPECT_TRUE(last.has_value()) << phase << ": the healthy client stopped printing events (no heartbeats?)";

    std::vector<std::int64_t> rtts;
    for (const Json& e : h.proc->events()) {
        const std::string kind = kind_of(e);
        EXPECT_NE(kind, "dead") << phase << ": the healthy client declared the server dead: " << e.dump();
        EXPECT_NE(kind, "closed") << phase << ": the healthy client's connection closed: " << e.dump();
        if (kind == "rtt") {
            const std::int64_t t = event_ms(e);
            if (t >= from_ms && t <= until_ms) rtts.push_back(t);
        }
    }
    std::int64_t max_gap = 0, previous = from_ms;
    for (std::int64_t t : rtts) {
        max_gap = std::max(max_gap, t - previous);
        previous = t;
    }
    max_gap = std::max(max_gap, until_ms - previous);
    const std::int64_t window = until_ms - from_ms;
    // On failure, the timeline: what the healthy client saw, and the server's stalls.
    auto timeline = [&] {
        std::string out;
        for (const Json& e : h.proc->events()) {
            if (event_ms(e) >= from_ms) out += " " + kind_of(e) + "@+" + std::to_string(event_ms(e) - from_ms) + "ms";
        }
        out += "\n  server stalls:";
        for (const Json& e : server.log->events()) {
            if (kind_of(e) == "stall")
                out += " +" + std::to_string(event_ms(e) - from_ms) + "ms:" + e.value("message", "");
        }
        return out;
    };
    EXPECT_LT(max_gap, kHealthyTimeoutMs) << phase << ": the healthy client went " << max_gap
                                          << " ms without a heartbeat answer; its events:" << timeline();
    for (const Json& e : server.log->events()) {
        const std::string kind = kind_of(e);
        if ((kind == "dead" || kind == "closed") && e.value("conn", std::uint64_t{0}) == h.server_conn) {
            ADD_FAILURE() << phase << ": the server disconnected the healthy client: " << e.dump();
        }
    }
    std::printf("[ healthy  ] %s: %zu rtt events in %lld ms, longest gap %lld ms\n", phase.c_str(), rtts.size(),
                static_cast<long long>(window), static_cast<long long>(max_gap));
}

// The first event of `kind` about the connection from `peer`, among those
// already read or arriving within `limit`.
inline std::optional<Json> await_event(EventLog& p, const std::string& kind, const std::string& peer,
                                       milliseconds limit) {
    auto match = [&](const Json& j) { return kind_of(j) == kind && j.value("peer", "") == peer; };
    for (const Json& j : p.events()) {
        if (match(j)) return j;
    }
    return p.wait_for(match, limit);
}

// ---- Raw sockets ----------------------------------------------------------------

inline sockaddr_in loopback_address(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return addr;
}

// "127.0.0.1:PORT" of our end: what the server's events call the peer.
inline std::string local_name(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(addr.sin_port));
}

// A connected, then non-blocking, socket to the server. `rcvbuf` > 0 sets
// SO_RCVBUF before connect, so the advertised window starts small.
inline Fd connect_raw(std::uint16_t port, int rcvbuf = 0) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    require(fd.get() >= 0, "socket: " + errno_text(errno));
    if (rcvbuf > 0) {
        require(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0,
                "SO_RCVBUF: " + errno_text(errno));
    }
    const sockaddr_in addr = loopback_address(port);
    require(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0,
            "connect: " + errno_text(errno));
    require(::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
    return fd;
}

// A port that was free a moment ago (for --http, which does not report the
// port it binds when asked for port 0).
inline std::uint16_t free_port() {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr = loopback_address(0);
    require(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "bind: " + errno_text(errno));
    socklen_t len = sizeof(addr);
    require(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
    return ntohs(addr.sin_port);
}

// Writes all of `bytes` to a non-blocking socket. Returns 0, the send errno,
// or ETIMEDOUT when `limit` passes first.
inline int send_all(int fd, std::span<const std::uint8_t> bytes, milliseconds limit) {
    const auto deadline = Steady::now() + limit;
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            bytes = bytes.subspan(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return errno;
        const std::int64_t left = ms_between(Steady::now(), deadline);
        if (left <= 0) return ETIMEDOUT;
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, static_cast<int>(left));
    }
    return 0;
}

struct Received {
    std::vector<std::uint8_t> bytes;
    bool eof = false;  // An orderly end (FIN) after the bytes.
    int error = 0;     // Or a socket error (ECONNRESET...), or ETIMEDOUT at the deadline.
    Steady::time_point end;
};

// Reads until the server ends the connection, or `limit` passes.
inline Received read_until_closed(int fd, milliseconds limit) {
    Received r;
    const auto deadline = Steady::now() + limit;
    std::uint8_t buf[4096];
    while (true) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            r.bytes.insert(r.bytes.end(), buf, buf + n);
            continue;
        }
        if (n == 0) {
            r.eof = true;
            break;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            r.error = errno;
            break;
        }
        const std::int64_t left = ms_between(Steady::now(), deadline);
        if (left <= 0) {
            r.error = ETIMEDOUT;
            break;
        }
        pollfd p{fd, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(left));
    }
    r.end = Steady::now();
    return r;
}

// Reads exactly `size` bytes, or fewer if the connection ends or `limit` passes.
inline std::vector<std::uint8_t> read_exact(int fd, std::size_t size, milliseconds limit) {
    std::vector<std::uint8_t> out;
    const auto deadline = Steady::now() + limit;
    while (out.size() < size) {
        std::uint8_t buf[4096];
        const ssize_t n = ::recv(fd, buf, std::min(sizeof(buf), size - out.size()), MSG_DONTWAIT);
        if (n > 0) {
            out.insert(out.end(), buf, buf + n);
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
        const std::int64_t left = ms_between(Steady::now(), deadline);
        if (left <= 0) break;
        pollfd p{fd, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(left));
    }
    return out;
}

// What the server sent on one connection.
struct Frames {
    std::vector<FrameType> types;
    std::optional<Welcome> welcome;
    std::optional<Close> close;
    std::string error;  // A decode error in what the server sent (it must never happen).
};

inline Frames decode_frames(std::span<const std::uint8_t> bytes) {
    Frames f;
    FrameDecoder decoder(DecoderRole::any);
    while (true) {
        FrameDecoder::Step step = decoder.next(bytes);
        if (step.error) {
            f.error = std::string(to_string(step.error->kind)) + ": " + step.error->detail;
            break;
        }
        if (!step.frame) break;
        f.types.push_back(frame_type(*step.frame));
        if (auto* w = std::get_if<Welcome>(&*step.frame)) f.welcome = *w;
        if (auto* c = std::get_if<Close>(&*step.frame)) f.close = *c;
    }
    if (f.error.empty() && decoder.buffered_bytes() > 0) f.error = "a partial frame at the end";
    return f;
}

inline std::vector<std::uint8_t> encode(const Frame& frame) {
    std::vector<std::uint8_t> out;
    const Result<void> r = append_frame(out, frame);
    require(static_cast<bool>(r), "append_frame failed");
    return out;
}

// HELLO -> WELCOME on a raw socket; the WELCOME, or nullopt.
inline std::optional<Welcome> handshake(int fd, const std::string& id, std::uint32_t interval_ms,
                                        std::uint32_t timeout_ms) {
    const std::vector<std::uint8_t> hello = encode(Hello{kProtocolVersion, interval_ms, timeout_ms, id});
    if (send_all(fd, hello, 2s) != 0) return std::nullopt;
    std::vector<std::uint8_t> bytes = read_exact(fd, 4, 3s);
    if (bytes.size() != 4) return std::nullopt;
    const std::size_t length =
        (std::size_t{bytes[0]} << 24) | (std::size_t{bytes[1]} << 16) | (std::size_t{bytes[2]} << 8) | bytes[3];
    if (length > 1024) return std::nullopt;
    const std::vector<std::uint8_t> rest = read_exact(fd, length, 3s);
    bytes.insert(bytes.end(), rest.begin(), rest.end());
    return decode_frames(bytes).welcome;
}

// A "closed" event's duration_ms (-1 when missing).
inline double duration_ms(const Json& closed) { return closed.value("duration_ms", -1.0); }

inline void report(const std::string& test, Steady::time_point started) {
    std::printf("[ timing   ] %s: %lld ms\n", test.c_str(), static_cast<long long>(ms_between(started, Steady::now())));
}

}  // namespace lifeline::e2e
