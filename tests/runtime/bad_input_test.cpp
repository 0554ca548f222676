// End-to-end: the real `lifeline serve` under bad input, on loopback only.
//
// Every scenario starts a server and one healthy `lifeline connect` client
// (heartbeat 100 ms, timeout 2 s), misbehaves on raw sockets from the test
// process, and then checks two things:
//   - the bad connection got a clear `error` event and a `closed` event with
//     the right reason (and, where the protocol says so, a CLOSE frame);
//   - it cost only its own connection: the healthy client saw no `dead` or
//     `closed`, kept getting an `rtt` (a PONG) within its timeout, and
//     the server reported nothing bad about the healthy connection.
//
// The waits are on events (pipes, sockets and the server's event file, polled
// with deadlines), never on fixed sleeps. A few places measure time windows on
// purpose: the CPU time of a server that is out of file descriptors, the
// freezes of a stopped server, and the spacing of the healthy client's
// heartbeats, read from the wall-clock "ts" each event line carries (the only
// clock the processes share).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <map>
#include <unordered_set>

#include "runtime/e2e_support.hpp"

namespace lifeline {
namespace {

using namespace e2e;

// ---- 1. Garbage as the first bytes ------------------------------------------------

struct GarbageCase {
    std::string name;
    std::vector<std::uint8_t> bytes;
    std::string error_kind;  // What docs/PROTOCOL.md says the header checks find first.
};

// gtest (and ctest's test names) print the case by its name, not as raw bytes.
void PrintTo(const GarbageCase& c, std::ostream* out) { *out << c.name; }

std::vector<std::uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

std::vector<GarbageCase> garbage_cases() {
    return {
        // "GET " read as a length is 0x47455420, far above 64 KiB: the length
        // check comes first, so an HTTP request is frame_too_large.
        {"HttpRequest", bytes_of("GET / HTTP/1.1\r\nHost: lifeline\r\n\r\n"), "frame_too_large"},
        {"UnknownType", {0x00, 0x00, 0x00, 0x05, 0x7f, 0xde, 0xad, 0xbe, 0xef}, "unknown_type"},
        {"ZeroLength", {0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03}, "empty_frame"},
        {"PingBeforeHello", encode(Ping{1, 2}), "unexpected_first_frame"},
    };
}

class BadInputGarbage : public ::testing::TestWithParam<GarbageCase> {};

TEST_P(BadInputGarbage, ClosesWithProtocolErrorAndACloseFrame) {
    const auto started = Steady::now();
    const GarbageCase& c = GetParam();
    ServerProcess server = start_server({});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    Fd fd = connect_raw(server.port);
    const std::string peer = local_name(fd.get());
    ASSERT_EQ(send_all(fd.get(), c.bytes, 2s), 0);
    const Received r = read_until_closed(fd.get(), 3s);
    EXPECT_TRUE(r.eof) << "expected CLOSE then an orderly end; error " << errno_text(r.error);
    const Frames frames = decode_frames(r.bytes);
    EXPECT_EQ(frames.error, "");
    ASSERT_TRUE(frames.close.has_value()) << r.bytes.size() << " bytes and no CLOSE frame";
    EXPECT_EQ(frames.types.size(), 1u) << "CLOSE must be the only frame";
    EXPECT_EQ(frames.close->code, static_cast<std::uint16_t>(CloseCode::protocol_error));
    EXPECT_THAT(frames.close->reason, HasSubstr(c.error_kind));

    const std::optional<Json> error = await_event(*server.log, "error", peer, 3s);
    ASSERT_TRUE(error.has_value()) << "no error event for " << peer;
    EXPECT_THAT(error->value("message", ""), StartsWith(c.error_kind + ":"));
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 3s);
    ASSERT_TRUE(closed.has_value()) << "no closed event for " << peer;
    EXPECT_EQ(closed->value("reason", ""), "protocol_error");
    EXPECT_LT(duration_ms(*closed), 1000.0) << "closed at once, not at a timeout";

    expect_healthy(healthy, server, from, wall_ms_now(), c.name);
    report("Garbage/" + c.name, started);
}

INSTANTIATE_TEST_SUITE_P(FirstBytes, BadInputGarbage, ::testing::ValuesIn(garbage_cases()),
                         [](const ::testing::TestParamInfo<GarbageCase>& param) { return param.param.name; });

// ---- 2. An oversized length ---------------------------------------------------------

TEST(BadInput, OversizedLengthIsRefusedAtTheHeader) {
    const auto started = Steady::now();
    ServerProcess server = start_server({});  // Handshake timeout 5 s: a close before that is the length check.
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    Fd fd = connect_raw(server.port);
    const std::string peer = local_name(fd.get());
    // A HELLO header announcing 2 GiB - 1; no body follows, and none is needed.
    const std::vector<std::uint8_t> header{0x7f, 0xff, 0xff, 0xff, 0x01};
    const auto sent_at = Steady::now();
    ASSERT_EQ(send_all(fd.get(), header, 2s), 0);
    const Received r = read_until_closed(fd.get(), 3s);
    EXPECT_TRUE(r.eof) << "error " << errno_text(r.error);
    EXPECT_LT(ms_between(sent_at, r.end), 1000) << "the server waited for a body instead of refusing the header";
    const Frames frames = decode_frames(r.bytes);
    ASSERT_TRUE(frames.close.has_value());
    EXPECT_EQ(frames.close->code, static_cast<std::uint16_t>(CloseCode::protocol_error));
    EXPECT_THAT(frames.close->reason, HasSubstr("frame_too_large"));

    const std::optional<Json> error = await_event(*server.log, "error", peer, 3s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), StartsWith("frame_too_large:"));
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 3s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "protocol_error");
    EXPECT_EQ(closed->value("bytes_in", std::uint64_t{0}), header.size());
    EXPECT_LT(duration_ms(*closed), 1000.0);

    expect_healthy(healthy, server, from, wall_ms_now(), "OversizedLength");
    report("OversizedLength", started);
}

// ---- 3. A HELLO that never comes -------------------------------------------------------

TEST(BadInput, SilentConnectionIsClosedAtTheHandshakeTimeout) {
    const auto started = Steady::now();
    ServerProcess server = start_server({"--handshake-timeout", "300ms"});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    Fd fd = connect_raw(server.port);
    const auto connected_at = Steady::now();
    const std::string peer = local_name(fd.get());
    const Received r = read_until_closed(fd.get(), 3s);
    const std::int64_t elapsed = ms_between(connected_at, r.end);
    EXPECT_TRUE(r.eof) << "error " << errno_text(r.error);
    EXPECT_GE(elapsed, 250);
    EXPECT_LE(elapsed, 1500);
    const Frames frames = decode_frames(r.bytes);
    ASSERT_TRUE(frames.close.has_value());
    EXPECT_EQ(frames.close->code, static_cast<std::uint16_t>(CloseCode::handshake_timeout));

    const std::optional<Json> error = await_event(*server.log, "error", peer, 3s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), HasSubstr("no HELLO within 300ms"));
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 3s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "protocol_error");
    EXPECT_GE(duration_ms(*closed), 250.0);
    EXPECT_LE(duration_ms(*closed), 1500.0);
    EXPECT_EQ(closed->value("bytes_in", std::uint64_t{1}), 0u);

    expect_healthy(healthy, server, from, wall_ms_now(), "NoHello");
    std::printf("[ measured ] closed %lld ms after connect\n", static_cast<long long>(elapsed));
    report("NoHello", started);
}

// ---- 4. Slowloris: a valid HELLO, one byte every 100 ms ------------------------------------

TEST(BadInput, SlowlorisHelloDoesNotExtendTheHandshakeDeadline) {
    const auto started = Steady::now();
    ServerProcess server = start_server({"--handshake-timeout", "300ms"});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    // 24 bytes: 2.4 s at this pace, eight times the handshake timeout.
    const std::vector<std::uint8_t> hello = encode(Hello{kProtocolVersion, 1000, 5000, "slowloris"});
    Fd fd = connect_raw(server.port);
    const auto connected_at = Steady::now();
    const std::string peer = local_name(fd.get());
    std::size_t dribbled = 0;
    for (std::uint8_t byte : hello) {
        if (::send(fd.get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) break;
        ++dribbled;
        // The pacing wait doubles as the wait for the server's answer.
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) != 0) break;
    }
    const Received r = read_until_closed(fd.get(), 3s);
    const std::int64_t elapsed = ms_between(connected_at, r.end);
    EXPECT_TRUE(r.eof || r.error == ECONNRESET) << "error " << errno_text(r.error);
    EXPECT_LT(dribbled, hello.size()) << "the whole HELLO went through: the deadline was extended";
    EXPECT_GE(elapsed, 250);
    EXPECT_LE(elapsed, 1500);
    const Frames frames = decode_frames(r.bytes);
    EXPECT_FALSE(frames.welcome.has_value());
    ASSERT_TRUE(frames.close.has_value());
    EXPECT_EQ(frames.close->code, static_cast<std::uint16_t>(CloseCode::handshake_timeout));

    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 3s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "protocol_error");
    EXPECT_GE(duration_ms(*closed), 250.0);
    EXPECT_LE(duration_ms(*closed), 1500.0);
    EXPECT_GE(closed->value("bytes_in", std::uint64_t{0}), 1u) << "the dribbled bytes did arrive";
    const std::optional<Json> error = await_event(*server.log, "error", peer, 1s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), HasSubstr("no HELLO within 300ms"));

    expect_healthy(healthy, server, from, wall_ms_now(), "Slowloris");
    std::printf("[ measured ] %zu of %zu bytes dribbled, closed %lld ms after connect\n", dribbled, hello.size(),
                static_cast<long long>(elapsed));
    report("Slowloris", started);
}

// ---- 5. 10,000 connects that send nothing ------------------------------------------------------

// Reads one value from the Prometheus text, e.g. `name{reason="x"}`; -1 if absent.
double metric(const std::string& text, const std::string& series) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
}

// Once failed in the sanitized build: every expired handshake deadline ran in
// one loop turn (0.3-2 s), starving the healthy connection. The loop now fires
// at most 512 timers per turn and services I/O in between.
TEST(BadInput, TenThousandSilentConnectsCostOnlyThemselves) {
    const auto started = Steady::now();
    constexpr int kConnections = 10'000;
    constexpr int kBatch = 250;  // Connects in flight at once.
    const std::uint16_t http_port = free_port();
    ServerProcess server =
        start_server({"--handshake-timeout", "2s", "--http", "127.0.0.1:" + std::to_string(http_port)});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    // Each socket reports the server's FIN once (one-shot): the test waits on
    // that, and reads the server's 30,000 event lines only at the end, so its
    // own parsing does not compete with the server while it works.
    Fd epoll_fd(::epoll_create1(EPOLL_CLOEXEC));
    ASSERT_GE(epoll_fd.get(), 0);
    std::vector<Fd> sockets;
    sockets.reserve(kConnections);
    std::unordered_set<std::string> peers;
    const sockaddr_in addr = loopback_address(server.port);
    for (int first = 0; first < kConnections; first += kBatch) {
        std::vector<pollfd> pending;
        for (int i = first; i < std::min(first + kBatch, kConnections); ++i) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            ASSERT_GE(fd, 0) << "socket #" << i << ": " << errno_text(errno);
            sockets.emplace_back(fd);
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 && errno != EINPROGRESS)
                FAIL() << "connect #" << i << ": " << errno_text(errno);
            pending.push_back({fd, POLLOUT, 0});
        }
        const auto deadline = Steady::now() + 10s;
        while (!pending.empty()) {
            ASSERT_LT(Steady::now(), deadline)
                << pending.size() << " connects of batch " << first / kBatch << " still pending after 10 s";
            if (::poll(pending.data(), pending.size(), 100) <= 0) continue;
            for (const pollfd& p : pending) {
                if (p.revents == 0) continue;
                int err = 0;
                socklen_t len = sizeof(err);
                ::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                ASSERT_EQ(err, 0) << "connect: " << errno_text(err);
                peers.insert(local_name(p.fd));
                epoll_event ev{};
                ev.events = EPOLLRDHUP | EPOLLONESHOT;
                ev.data.fd = p.fd;
                ASSERT_EQ(::epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, p.fd, &ev), 0) << errno_text(errno);
            }
            std::erase_if(pending, [](const pollfd& p) { return p.revents != 0; });
        }
    }
    const auto all_connected = Steady::now();
    ASSERT_EQ(peers.size(), static_cast<std::size_t>(kConnections));

    // Every one of them is closed at its handshake deadline; bounded wait.
    int ended = 0;
    const auto deadline = all_connected + 20s;
    std::vector<epoll_event> ready(1024);
    while (ended < kConnections && Steady::now() < deadline) {
        const int n = ::epoll_wait(epoll_fd.get(), ready.data(), static_cast<int>(ready.size()), 500);
        for (int i = 0; i < n; ++i) {
            if (ready[static_cast<std::size_t>(i)].events & (EPOLLRDHUP | EPOLLHUP)) ++ended;
        }
    }
    const auto all_closed = Steady::now();
    EXPECT_EQ(ended, kConnections) << "sockets the server did not close within 20 s";

    std::size_t connects = 0, no_hello_errors = 0;
    std::map<std::string, std::size_t> closed_by_reason;
    for (const Json& e : server.log->events()) {
        if (!peers.contains(e.value("peer", ""))) continue;
        const std::string kind = kind_of(e);
        if (kind == "connect") ++connects;
        if (kind == "error" && e.value("message", "").find("no HELLO within 2s") != std::string::npos)
            ++no_hello_errors;
        if (kind == "closed") ++closed_by_reason[e.value("reason", "")];
    }
    EXPECT_EQ(connects, static_cast<std::size_t>(kConnections));
    EXPECT_EQ(no_hello_errors, static_cast<std::size_t>(kConnections));
    EXPECT_EQ(closed_by_reason["protocol_error"], static_cast<std::size_t>(kConnections));
    for (const auto& [reason, count] : closed_by_reason) {
        if (reason != "protocol_error") {
            EXPECT_EQ(count, 0u) << count << " closed with reason " << reason;
        }
    }

    httplib::Client http("127.0.0.1", http_port);
    http.set_connection_timeout(2s);
    http.set_read_timeout(5s);
    const httplib::Result res = http.Get("/metrics");
    ASSERT_TRUE(res) << "GET /metrics failed: " << httplib::to_string(res.error());
    EXPECT_EQ(metric(res->body, "lifeline_connections_closed_total{reason=\"protocol_error\"}"), kConnections);
    EXPECT_EQ(metric(res->body, "lifeline_connections_accepted_total"), kConnections + 1);
    EXPECT_EQ(metric(res->body, "lifeline_connections_open"), 1);
    EXPECT_EQ(metric(res->body, "lifeline_protocol_errors_total"), kConnections);

    expect_healthy(healthy, server, from, wall_ms_now(), "TenThousandSilent");
    std::printf("[ measured ] 10000 connected in %lld ms, all closed %lld ms later\n",
                static_cast<long long>(ms_between(started, all_connected)),
                static_cast<long long>(ms_between(all_connected, all_closed)));
    sockets.clear();
    report("TenThousandSilent", started);
}

// ---- 7. Too many pings --------------------------------------------------------------------

TEST(BadInput, PingFloodIsClosedWithTooManyPings) {
    const auto started = Steady::now();
    ServerProcess server = start_server({});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    Fd fd = connect_raw(server.port);
    const std::string peer = local_name(fd.get());
    ASSERT_TRUE(handshake(fd.get(), "pinger", 100, 1000).has_value());
    std::vector<std::uint8_t> pings;
    for (std::uint64_t seq = 1; seq <= 10; ++seq) ASSERT_TRUE(append_frame(pings, Ping{seq, 0}));
    ASSERT_EQ(send_all(fd.get(), pings, 2s), 0);

    const Received r = read_until_closed(fd.get(), 3s);
    EXPECT_TRUE(r.eof) << "error " << errno_text(r.error);
    const Frames frames = decode_frames(r.bytes);
    EXPECT_EQ(frames.error, "");
    ASSERT_TRUE(frames.close.has_value());
    EXPECT_EQ(frames.close->code, static_cast<std::uint16_t>(CloseCode::too_many_pings));
    EXPECT_THAT(frames.close->reason, HasSubstr("too many pings"));
    EXPECT_EQ(frames.types.back(), FrameType::close);
    EXPECT_LT(frames.types.size(), 10u) << "the flood was answered in full";

    const std::optional<Json> error = await_event(*server.log, "error", peer, 3s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), HasSubstr("too many pings"));
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 3s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "protocol_error");

    expect_healthy(healthy, server, from, wall_ms_now(), "PingFlood");
    report("PingFlood", started);
}

// The other side of the ping rule: a client that pings at exactly its granted
// interval is never "too many pings", even when the server falls behind and
// then reads several of its PINGs at once (a loaded loop, a descheduled
// process; here a SIGSTOP shorter than the client's timeout, four times).
// Once failed: PINGs were timed by when the loop processed them and strikes
// never decayed. Now a token bucket refills with elapsed time and a detected
// stall refills it outright.
TEST(BadInput, ServerThatFallsBehindDoesNotConvictAHealthyPinger) {
    const auto started = Steady::now();
    ServerProcess server = start_server({});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    auto read_healthy_for = [&](milliseconds window) {
        const auto end = Steady::now() + window;
        for (auto now = Steady::now(); now < end; now = Steady::now()) {
            healthy.proc->next_event(std::chrono::duration_cast<milliseconds>(end - now) + 1ms);
        }
    };
    for (int i = 0; i < 4; ++i) {
        server.proc->signal(SIGSTOP);
        read_healthy_for(250ms);  // Two or three PINGs queue up meanwhile.
        server.proc->signal(SIGCONT);
        read_healthy_for(600ms);
    }
    expect_healthy(healthy, server, from, wall_ms_now(), "ServerFallsBehind");
    for (const Json& e : server.log->events()) {
        EXPECT_NE(kind_of(e), "error") << "the server complained about the healthy client: " << e.dump();
    }
    report("ServerFallsBehind", started);
}

// ---- 8. Out of file descriptors at accept -----------------------------------------------------

// utime + stime of a process, in seconds.
double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t paren = text.rfind(')');
    require(paren != std::string::npos, "cannot read /proc/PID/stat");
    std::istringstream fields(text.substr(paren + 2));  // From field 3 (state) on.
    std::vector<std::string> f;
    for (std::string s; fields >> s;) f.push_back(s);
    require(f.size() > 12, "short /proc/PID/stat");
    const double ticks = static_cast<double>(std::stoull(f[11]) + std::stoull(f[12]));  // Fields 14 and 15.
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

TEST(BadInput, OutOfFileDescriptorsAtAcceptPausesThenRecovers) {
    const auto started = Steady::now();
    // 32 descriptors: stdio, epoll, eventfd, listener and the healthy client's
    // connection leave room for about 25 more. A long handshake timeout keeps
    // them held until the test lets go.
    ServerProcess server = start_server({"--handshake-timeout", "60s"}, "ulimit -n 32;");
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    constexpr int kConnections = 40;
    std::vector<Fd> conns;
    std::unordered_set<std::string> peers;
    for (int i = 0; i < kConnections; ++i) {
        conns.push_back(connect_raw(server.port));
        peers.insert(local_name(conns.back().get()));
    }
    const std::optional<Json> paused = server.log->wait_for(
        [](const Json& j) {
            return kind_of(j) == "error" && j.value("message", "").find("accept") != std::string::npos;
        },
        5s);
    ASSERT_TRUE(paused.has_value()) << "no accept error with " << kConnections << " connections and ulimit -n 32";
    EXPECT_THAT(paused->value("message", ""), HasSubstr("Too many open files"));
    EXPECT_THAT(paused->value("message", ""), HasSubstr("paused"));
    auto accepted = [&] {
        return std::count_if(server.log->events().begin(), server.log->events().end(), [&](const Json& j) {
            return kind_of(j) == "connect" && peers.contains(j.value("peer", ""));
        });
    };
    const auto accepted_before = accepted();
    EXPECT_GT(accepted_before, 0);
    EXPECT_LT(accepted_before, kConnections);

    // One second out of descriptors, spent reading the healthy client's events.
    const double cpu_before = cpu_seconds(server.proc->pid());
    const auto window_end = Steady::now() + 1s;
    for (auto now = Steady::now(); now < window_end; now = Steady::now()) {
        healthy.proc->next_event(std::chrono::duration_cast<milliseconds>(window_end - now) + 1ms);
    }
    const double cpu_used = cpu_seconds(server.proc->pid()) - cpu_before;
    EXPECT_LT(cpu_used, 0.3) << "the server spun on a listener it cannot accept from";
    EXPECT_EQ(accepted(), accepted_before) << "descriptors came free during the window: the CPU check proves less";

    // Let go of most connections: the server must accept again.
    conns.erase(conns.begin(), conns.begin() + 30);
    const auto freed_at = Steady::now();
    Fd fresh = connect_raw(server.port);
    const std::string fresh_peer = local_name(fresh.get());
    const std::optional<Json> connect = await_event(*server.log, "connect", fresh_peer, 5s);
    EXPECT_TRUE(connect.has_value()) << "no connection accepted within 5 s of freeing descriptors";

    expect_healthy(healthy, server, from, wall_ms_now(), "Emfile");
    std::printf(
        "[ measured ] %lld of %d accepted before EMFILE; %.2f s CPU in the 1 s window; "
        "accepting again %lld ms after freeing\n",
        static_cast<long long>(accepted_before), kConnections, cpu_used,
        static_cast<long long>(ms_between(freed_at, Steady::now())));
    report("Emfile", started);
}

// ---- 9. Invalid UTF-8 in the HELLO id
// ------------------------------------------------------------

TEST(BadInput, InvalidUtf8IdIsBadUtf8) {
    const auto started = Steady::now();
    ServerProcess server = start_server({});
    HealthyClient healthy = start_healthy(server);
    const std::int64_t from = wall_ms_now();

    Fd fd = connect_raw(server.port);
    const std::string peer = local_name(fd.get());
    // The encoder refuses invalid UTF-8, so this HELLO is built by hand:
    // version 1, interval 100 ms, timeout 1000 ms, id_len 2, id 0xff 0xfe.
    const std::vector<std::uint8_t> hello{0x00, 0x00, 0x00, 0x0d, 0x01, 0x01, 0x00, 0x00, 0x00,
                                          0x64, 0x00, 0x00, 0x03, 0xe8, 0x02, 0xff, 0xfe};
    ASSERT_EQ(send_all(fd.get(), hello, 2s), 0);
    const Received r = read_until_closed(fd.get(), 3s);
    EXPECT_TRUE(r.eof) << "error " << errno_text(r.error);
    const Frames frames = decode_frames(r.bytes);
    EXPECT_FALSE(frames.welcome.has_value());
    ASSERT_TRUE(frames.close.has_value());
    EXPECT_EQ(frames.close->code, static_cast<std::uint16_t>(CloseCode::protocol_error));
    EXPECT_THAT(frames.close->reason, HasSubstr("bad_utf8"));

    const std::optional<Json> error = await_event(*server.log, "error", peer, 3s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), StartsWith("bad_utf8:"));
    const std::optional<Json> closed = await_event(*server.log, "closed", peer, 3s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "protocol_error");

    expect_healthy(healthy, server, from, wall_ms_now(), "BadUtf8");
    report("BadUtf8", started);
}

}  // namespace
}  // namespace lifeline
