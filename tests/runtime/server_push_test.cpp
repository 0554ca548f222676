// End to end on loopback: `lifeline serve --push RATE` streams filler to every
// client (a stand-in for a push gateway), through the ordinary output path.
//
// The checks: raw and framed clients receive filler at roughly the rate, a
// framed client only after its HELLO; a client that stops reading is closed
// as slow_consumer while one that reads stays open; pushed bytes are traffic
// out, never proof that the peer is alive; and the rate is parsed and
// validated with errors that name --push.
//
// The waits are on events (the server's event lines, socket readiness),
// bounded by generous deadlines. One test also measures bytes over a time
// window, with a broad band, because a rate is what it checks.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "lifeline/server.hpp"
#include "lifeline/testing.hpp"
#include "net/loopback_pair.hpp"
#include "support/child_process.hpp"
#include "support/serve_io.hpp"

namespace lifeline {
namespace {

using testing::ChildProcess;
using testing::Fd;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * 1024;
// What the server's filler begins with (see Worker::prepare_push).
constexpr std::string_view kFillerStart = "lifeline push filler";

std::string kind_of(const Json& e) { return e.value("event", ""); }

auto about(const std::string& kind, const std::string& peer) {
    return [kind, peer](const Json& j) { return kind_of(j) == kind && j.value("peer", "") == peer; };
}

struct ServerProcess {
    std::unique_ptr<ChildProcess> proc;
    std::uint16_t port = 0;  // 0 when the server did not come up.
};

ServerProcess start_server(const std::vector<std::string>& flags) {
    std::vector<std::string> argv{LIFELINE_BINARY, "serve", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    for (const std::string& flag : lifeline::testing::serve_io_flags()) argv.push_back(flag);
    ServerProcess s;
    s.proc = std::make_unique<ChildProcess>(argv);
    const std::optional<Json> listening = s.proc->wait_for_event("listening", 10s);
    if (!listening) return s;
    const std::string address = listening->value("address", "");
    s.port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    return s;
}

// A connected, then non-blocking, socket to the server; invalid on failure.
// `rcvbuf` > 0 sets SO_RCVBUF before connect, so the advertised window starts small.
Fd connect_to(std::uint16_t port, int rcvbuf = 0) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return fd;
    if (rcvbuf > 0 && ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0) return Fd();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) return Fd();
    if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) != 0) return Fd();
    return fd;
}

// "127.0.0.1:PORT" of our end: what the server's events call the peer.
std::string local_name(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(addr.sin_port));
}

std::int64_t ms_left(Steady::time_point deadline) {
    return std::chrono::ceil<milliseconds>(deadline - Steady::now()).count();
}

// Waits for `fd` to become readable, at most until `deadline`.
void await_readable(int fd, Steady::time_point deadline) {
    const std::int64_t left = ms_left(deadline);
    if (left <= 0) return;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left));
}

struct Received {
    std::size_t bytes = 0;
    bool ended = false;  // FIN or an error (e.g. ECONNRESET) from the server.
    std::string head;    // The first bytes, up to the asked-for number.
};

// Reads until `want` bytes arrived, the connection ended, or `deadline`
// passed (with a deadline already past: whatever is available now).
Received read_raw(int fd, std::size_t want, Steady::time_point deadline, std::size_t keep_head = 0) {
    Received r;
    std::vector<std::uint8_t> buf(64 * kKiB);
    while (r.bytes < want) {
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
            const auto got = static_cast<std::size_t>(n);
            if (r.head.size() < keep_head)
                r.head.append(buf.begin(),
                              buf.begin() + static_cast<std::ptrdiff_t>(std::min(got, keep_head - r.head.size())));
            r.bytes += got;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            r.ended = true;
            break;
        }
        if (ms_left(deadline) <= 0) break;
        await_readable(fd, deadline);
    }
    return r;
}

// What a framed client saw from the server, decoded as `lifeline connect` would.
struct FramedStream {
    FrameDecoder decoder{DecoderRole::client};
    std::vector<FrameType> types;
    std::size_t data_bytes = 0;  // DATA payload bytes.
    std::size_t largest_payload = 0;
    std::size_t payloads_not_filler = 0;
    std::optional<Close> close;
    std::string error;  // A decode error (the server must never cause one).
    bool ended = false;

    void feed(std::span<const std::uint8_t> bytes) {
        while (error.empty()) {
            FrameDecoder::Step step = decoder.next(bytes);
            if (step.error) {
                error = std::string(to_string(step.error->kind)) + ": " + step.error->detail;
                return;
            }
            if (!step.frame) return;
            types.push_back(frame_type(*step.frame));
            if (const auto* d = std::get_if<Data>(&*step.frame)) {
                data_bytes += d->payload.size();
                largest_payload = std::max(largest_payload, d->payload.size());
                const std::size_t n = std::min(d->payload.size(), kFillerStart.size());
                if (std::string_view(reinterpret_cast<const char*>(d->payload.data()), n) != kFillerStart.substr(0, n))
                    ++payloads_not_filler;
            }
            if (const auto* c = std::get_if<Close>(&*step.frame)) close = *c;
        }
    }
};

// Reads and decodes until `want` DATA bytes, a CLOSE, the end, or `deadline`.
void read_frames(int fd, FramedStream& s, std::size_t want, Steady::time_point deadline) {
    std::vector<std::uint8_t> buf(64 * kKiB);
    while (s.data_bytes < want && !s.close && s.error.empty()) {
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
            s.feed({buf.data(), static_cast<std::size_t>(n)});
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            s.ended = true;
            return;
        }
        if (ms_left(deadline) <= 0) return;
        await_readable(fd, deadline);
    }
}

bool send_hello(int fd, std::uint32_t interval_ms, std::uint32_t timeout_ms, const std::string& id) {
    std::vector<std::uint8_t> bytes;
    if (!append_frame(bytes, Hello{kProtocolVersion, interval_ms, timeout_ms, id})) return false;
    // A HELLO is tiny: a fresh socket's buffer takes it at once.
    return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

// Reads (and discards) everything that arrives on `fd`, on a thread of its
// own, until stop() or destruction (so a failed assertion cannot leave it running).
class BackgroundReader {
public:
    explicit BackgroundReader(int fd) : thread_([this, fd] { run(fd); }) {}
    BackgroundReader(const BackgroundReader&) = delete;
    BackgroundReader& operator=(const BackgroundReader&) = delete;
    ~BackgroundReader() { stop(); }

    void stop() {
        stop_.store(true);
        if (thread_.joinable()) thread_.join();
    }
    std::size_t bytes() {
        std::lock_guard lock(mutex_);
        return bytes_;
    }
    bool ended() {
        std::lock_guard lock(mutex_);
        return ended_;
    }
    // Waits until `total` bytes have arrived; false at the deadline or if the connection ended
    // first.
    bool reaches(std::size_t total, std::chrono::seconds limit) {
        std::unique_lock lock(mutex_);
        progress_.wait_for(lock, limit, [&] { return bytes_ >= total || ended_; });
        return bytes_ >= total && !ended_;
    }

private:
    void run(int fd) {
        while (!stop_.load()) {
            const Received r = read_raw(fd, std::numeric_limits<std::size_t>::max(), Steady::now() + 50ms);
            std::lock_guard lock(mutex_);
            bytes_ += r.bytes;
            ended_ = ended_ || r.ended;
            progress_.notify_all();
            if (r.ended) return;
        }
    }

    std::mutex mutex_;
    std::condition_variable progress_;
    std::size_t bytes_ = 0;
    bool ended_ = false;
    std::atomic<bool> stop_{false};
    std::thread thread_;  // Last: starts once the rest is built.
};

// ---- Rate ---------------------------------------------------------------------------

TEST(ServerPush, RawModeStreamsFillerAtTheRate) {
    ServerProcess server = start_server({"--mode", "raw", "--push", "1M"});
    ASSERT_NE(server.port, 0) << "the server did not start";
    Fd fd = connect_to(server.port);
    ASSERT_GE(fd.get(), 0);
    const std::string peer = local_name(fd.get());

    const Received first = read_raw(fd.get(), 200 * kKiB, Steady::now() + 10s, kFillerStart.size());
    ASSERT_GE(first.bytes, 200 * kKiB) << "ended: " << first.ended;
    EXPECT_EQ(first.head, kFillerStart);

    // Drain what queued up, then count over a window: the rate is credited by
    // elapsed time, so it holds however the server's turns fall. The band is
    // broad (a shared machine), but an unpaced or a much too slow push fails it.
    const Received backlog = read_raw(fd.get(), std::numeric_limits<std::size_t>::max(), Steady::now());
    ASSERT_FALSE(backlog.ended);
    const auto window_start = Steady::now();
    const Received window = read_raw(fd.get(), std::numeric_limits<std::size_t>::max(), window_start + 1500ms);
    const double seconds = std::chrono::duration<double>(Steady::now() - window_start).count();
    ASSERT_FALSE(window.ended);
    const double rate = static_cast<double>(window.bytes) / seconds;
    EXPECT_GE(rate, 0.5 * static_cast<double>(kMiB)) << window.bytes << " bytes in " << seconds << " s";
    EXPECT_LE(rate, 1.5 * static_cast<double>(kMiB)) << window.bytes << " bytes in " << seconds << " s";
    std::printf("[ measured ] %zu bytes in %.3f s: %.0f B/s (asked 1048576)\n", window.bytes, seconds, rate);

    // Pushed bytes are the connection's bytes_out.
    const std::size_t received = first.bytes + backlog.bytes + window.bytes;
    fd.reset();
    const std::optional<Json> closed = server.proc->wait_for(about("closed", peer), 5s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_GE(closed->value("bytes_out", std::uint64_t{0}), received);
}

// ---- Framed: DATA after the HELLO only --------------------------------------------------

TEST(ServerPush, FramedModePushesDataFramesOnlyAfterHello) {
    ServerProcess server = start_server({"--push", "1M"});
    ASSERT_NE(server.port, 0) << "the server did not start";

    // `silent` is accepted first and says nothing yet.
    Fd silent = connect_to(server.port);
    ASSERT_GE(silent.get(), 0);
    ASSERT_TRUE(server.proc->wait_for(about("connect", local_name(silent.get())), 5s));

    Fd greeted = connect_to(server.port);
    ASSERT_GE(greeted.get(), 0);
    // A long timeout: this client never PINGs, and must not be convicted mid-test.
    ASSERT_TRUE(send_hello(greeted.get(), 1000, 30000, "greeted"));
    FramedStream stream;
    read_frames(greeted.get(), stream, 64 * kKiB, Steady::now() + 10s);
    ASSERT_EQ(stream.error, "");
    ASSERT_GE(stream.data_bytes, 64 * kKiB) << "ended: " << stream.ended;
    ASSERT_FALSE(stream.types.empty());
    EXPECT_EQ(stream.types.front(), FrameType::welcome);
    for (std::size_t i = 1; i < stream.types.size(); ++i) EXPECT_EQ(stream.types[i], FrameType::data) << "frame " << i;
    // 16 KiB or 10 ms worth of the rate, whichever is smaller.
    EXPECT_LE(stream.largest_payload, std::size_t{1 * kMiB / 100});
    EXPECT_EQ(stream.payloads_not_filler, 0u);

    // All the while (64 KiB at 1 MiB/s: several push ticks), the connection
    // without a HELLO got nothing at all.
    std::uint8_t byte = 0;
    const ssize_t n = ::recv(silent.get(), &byte, 1, MSG_DONTWAIT);
    const int err = errno;
    EXPECT_EQ(n, -1) << "the server sent bytes before the HELLO";
    EXPECT_TRUE(err == EAGAIN || err == EWOULDBLOCK) << std::strerror(err);

    // Once it says HELLO, it gets the WELCOME first, then DATA.
    ASSERT_TRUE(send_hello(silent.get(), 1000, 30000, "late"));
    FramedStream late;
    read_frames(silent.get(), late, 16 * kKiB, Steady::now() + 10s);
    ASSERT_EQ(late.error, "");
    ASSERT_GE(late.data_bytes, 16 * kKiB) << "ended: " << late.ended;
    EXPECT_EQ(late.types.front(), FrameType::welcome);
}

// ---- A client that stops reading ------------------------------------------------------

TEST(ServerPush, ClientThatStopsReadingIsClosedAsSlowConsumerAndReaderStaysOpen) {
    // 4 MiB/s against a 512 KiB budget: the reader's worst burst (100 ms of
    // credit after a late wake-up, 400 KiB) still fits, the stuck client's
    // backlog passes it within a fraction of a second.
    ServerProcess server = start_server({"--mode", "raw", "--push", "4M", "--output-budget", "524288"});
    ASSERT_NE(server.port, 0) << "the server did not start";

    Fd reader_fd = connect_to(server.port);
    ASSERT_GE(reader_fd.get(), 0);
    const std::string reader_peer = local_name(reader_fd.get());
    BackgroundReader reader(reader_fd.get());
    EXPECT_TRUE(reader.reaches(256 * kKiB, 10s)) << "the reader got no filler";

    Fd stuck = connect_to(server.port, /*rcvbuf=*/4096);
    ASSERT_GE(stuck.get(), 0);
    const std::string stuck_peer = local_name(stuck.get());
    const std::optional<Json> closed = server.proc->wait_for(about("closed", stuck_peer), 10s);
    ASSERT_TRUE(closed.has_value()) << "the client that never reads was not closed";
    EXPECT_EQ(closed->value("reason", ""), "slow_consumer");
    const std::optional<Json> error = server.proc->seen_or_wait_for(about("error", stuck_peer), 1s);
    ASSERT_TRUE(error.has_value());
    EXPECT_THAT(error->value("message", ""), StartsWith("peer is not reading"));
    EXPECT_THAT(error->value("message", ""), HasSubstr("budget 524288"));

    // The reader keeps getting filler after that (another 1 MiB), and stays open.
    EXPECT_TRUE(reader.reaches(reader.bytes() + kMiB, 10s)) << "the reader stopped getting filler";
    reader.stop();
    EXPECT_FALSE(reader.ended()) << "the server closed the client that keeps reading";
    for (const Json& e : server.proc->events()) {
        EXPECT_FALSE(about("closed", reader_peer)(e)) << e.dump();
    }
}

// ---- Liveness --------------------------------------------------------------------------

// Filler is traffic out: a client that reads it all but sends nothing is
// still convicted on its timeout.
TEST(ServerPush, PushedBytesAreNotHearingFromThePeerFramed) {
    ServerProcess server = start_server({"--push", "1M"});
    ASSERT_NE(server.port, 0) << "the server did not start";
    Fd fd = connect_to(server.port);
    ASSERT_GE(fd.get(), 0);
    const std::string peer = local_name(fd.get());
    ASSERT_TRUE(send_hello(fd.get(), 100, 500, "mute"));
    FramedStream stream;
    read_frames(fd.get(), stream, std::numeric_limits<std::size_t>::max(), Steady::now() + 10s);
    ASSERT_EQ(stream.error, "");
    ASSERT_TRUE(stream.close.has_value()) << "no CLOSE within 10 s; DATA received: " << stream.data_bytes;
    EXPECT_EQ(stream.close->code, static_cast<std::uint16_t>(CloseCode::heartbeat_timeout));
    EXPECT_GE(stream.data_bytes, 64 * kKiB) << "filler was not flowing meanwhile";

    const std::optional<Json> dead = server.proc->wait_for(about("dead", peer), 5s);
    ASSERT_TRUE(dead.has_value());
    EXPECT_EQ(dead->value("reason", ""), "heartbeat_timeout");
    EXPECT_GE(dead->value("silence_ms", 0.0), 500.0);
}

TEST(ServerPush, PushedBytesAreNotHearingFromThePeerRaw) {
    ServerProcess server = start_server({"--mode", "raw", "--push", "1M", "--idle-timeout", "300ms"});
    ASSERT_NE(server.port, 0) << "the server did not start";
    Fd fd = connect_to(server.port);
    ASSERT_GE(fd.get(), 0);
    const std::string peer = local_name(fd.get());
    const Received r = read_raw(fd.get(), std::numeric_limits<std::size_t>::max(), Steady::now() + 10s);
    EXPECT_TRUE(r.ended) << "not closed within 10 s";
    EXPECT_GE(r.bytes, 32 * kKiB) << "filler was not flowing meanwhile";
    const std::optional<Json> closed = server.proc->wait_for(about("closed", peer), 5s);
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->value("reason", ""), "idle_timeout");
    EXPECT_GE(closed->value("duration_ms", 0.0), 300.0);
}

// ---- Parsing and validation -------------------------------------------------------------

TEST(ServerPush, ByteRateParser) {
    struct Good {
        const char* text;
        std::uint64_t value;
    };
    for (const Good& g : {Good{"0", 0}, Good{"4096", 4096}, Good{"64K", 65536}, Good{"64k", 65536}, Good{"1M", 1048576},
                          Good{"4m", 4194304}, Good{"1G", 1073741824}}) {
        const Result<std::uint64_t> r = testing::parse_byte_rate(g.text);
        ASSERT_TRUE(r.ok()) << g.text << ": " << r.error().message;
        EXPECT_EQ(*r, g.value) << g.text;
    }
    for (const char* bad : {"abc", "-1", "", "1.5M", "1MB", "M", " 1M", "1M ", "1T", "0x10"}) {
        const Result<std::uint64_t> r = testing::parse_byte_rate(bad);
        ASSERT_FALSE(r.ok()) << "'" << bad << "' parsed as " << *r;
        EXPECT_EQ(r.error().message, "expected a byte rate like 64K or 1M, got '" + std::string(bad) + "'");
    }
    for (const char* huge : {"18446744073709551616", "17179869184G"}) {
        const Result<std::uint64_t> r = testing::parse_byte_rate(huge);
        ASSERT_FALSE(r.ok()) << huge;
        EXPECT_THAT(r.error().message, HasSubstr("(too large)"));
    }
}

TEST(ServerPush, PushRateAboveOneGiBPerSecondIsRejected) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    testing::ServerFaults faults;
    faults.push_rate = testing::kMaxPushRate;
    EXPECT_TRUE(testing::create_server(o, {}, faults).ok());
    faults.push_rate = testing::kMaxPushRate + 1;
    auto server = testing::create_server(o, {}, faults);
    ASSERT_FALSE(server.ok());
    EXPECT_THAT(server.error().message, HasSubstr("push_rate"));  // The field: `serve` says --push (below).
    EXPECT_EQ(server.error().code, Errc::invalid_argument);
}

struct CliRun {
    int status = -1;     // Exit status, or -1 when it did not exit normally.
    std::string output;  // stdout and stderr.
};

// Runs the binary to completion. Every call below fails before serving
// (bad flag, or an impossible --listen), so it cannot hang.
CliRun run_cli(const std::string& args) {
    CliRun run;
    const std::string command = std::string(LIFELINE_BINARY) + " " + args + " 2>&1 </dev/null";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return run;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof(buf), pipe)) run.output.append(buf, n);
    const int status = ::pclose(pipe);
    if (status != -1 && WIFEXITED(status)) run.status = WEXITSTATUS(status);
    return run;
}

TEST(ServeCli, KeepaliveSystemSetsNothingAndSoTakesNoUserTimeout) {
    const CliRun both = run_cli("serve --listen 127.0.0.1:99999 --keepalive system --user-timeout 5s");
    EXPECT_EQ(both.status, 2) << both.output;
    EXPECT_THAT(both.output, HasSubstr("--keepalive system sets no socket option, so it takes no --user-timeout"));
    // Past the flags, to the impossible address, saying what is in force.
    const CliRun system = run_cli("serve --listen 127.0.0.1:99999 --mode raw --keepalive system");
    EXPECT_NE(system.status, 0);
    EXPECT_THAT(system.output, HasSubstr("--listen")) << system.output;
}

TEST(ServerPush, CliParsesPushAndNamesItInErrors) {
    // Port 99999 makes any run that gets past the flags fail at --listen.
    const std::string serve = "serve --listen 127.0.0.1:99999 ";
    for (const std::string bad : {"abc", "-1", "1.5M"}) {
        const CliRun r = run_cli(serve + "--push=" + bad);
        EXPECT_NE(r.status, 0) << bad;
        EXPECT_THAT(r.output, HasSubstr("--push: expected a byte rate like 64K or 1M, got '" + bad + "'")) << bad;
    }
    const CliRun too_fast = run_cli(serve + "--push 2G");
    EXPECT_NE(too_fast.status, 0);
    EXPECT_THAT(too_fast.output, HasSubstr("--push: must be at most 1G"));
    // A good rate gets past the flags (and the checks), to the impossible address.
    const CliRun good = run_cli(serve + "--push 64K");
    EXPECT_NE(good.status, 0);
    EXPECT_THAT(good.output, HasSubstr("--listen"));
    EXPECT_THAT(good.output, ::testing::Not(HasSubstr("--push")));

    const CliRun help = run_cli("serve --help");
    EXPECT_EQ(help.status, 0);
    EXPECT_THAT(help.output, HasSubstr("--push"));
    EXPECT_THAT(help.output, HasSubstr("push gateway"));
    EXPECT_THAT(help.output, HasSubstr("slow_consumer"));
}

}  // namespace
}  // namespace lifeline
