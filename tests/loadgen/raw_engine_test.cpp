// The raw load engine (echo and MQTT 3.1.1) against in-test servers on
// loopback: an echo server that closes connections idle for too long (so
// silenced connections get detected, and live ones must not), and a tiny MQTT
// responder that records every CONNECT and answers PINGREQs. Waits are on the
// engine's stats or the servers' records, polled with generous upper bounds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loadgen/load_engine.hpp"

namespace lifeline::loadgen {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// A listening socket on 127.0.0.1:0 (bound, not yet listening if `listen_now` is false).
int loopback_socket(std::uint16_t& port, bool listen_now) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) throw std::runtime_error("bind failed");
    if (listen_now && ::listen(fd, 256) != 0) throw std::runtime_error("listen failed");
    socklen_t len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        throw std::runtime_error("getsockname failed");
    }
    port = ntohs(addr.sin_port);
    return fd;
}

void send_all(int fd, const void* data, std::size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
        if (n <= 0) return;  // The peer is gone; the read side will notice.
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

// A poll() server on its own thread. Subclasses decide what to do with bytes
// (on_data) and may close connections on the server's own schedule (on_tick).
// Everything runs on the server thread; results go through `mutex_`.
class PollServer {
public:
    PollServer() {
        listener_ = loopback_socket(port_, true);
        if (::pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    }
    virtual ~PollServer() { shut_down(); }
    PollServer(const PollServer&) = delete;
    PollServer& operator=(const PollServer&) = delete;

    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    void start() {
        thread_ = std::thread([this] { serve(); });
    }
    // Stops the thread and closes every socket; subclasses call it first in their destructor.
    void shut_down() {
        if (thread_.joinable()) {
            const char c = 'x';
            [[maybe_unused]] const ssize_t n = ::write(wake_[1], &c, 1);
            thread_.join();
        }
        for (Conn& c : conns_) ::close(c.fd);
        conns_.clear();
        if (listener_ >= 0) ::close(listener_);
        listener_ = -1;
        if (wake_[0] >= 0) {
            ::close(wake_[0]);
            ::close(wake_[1]);
            wake_[0] = wake_[1] = -1;
        }
    }

    // Waits (bounded) until `done` holds; `done` may call the accessors (it runs unlocked).
    bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
        const auto deadline = SteadyClock::now() + limit;
        for (;;) {
            if (done()) return true;
            if (SteadyClock::now() >= deadline) return false;
            // Woken by any change; the short bound only covers a change between done() and here.
            std::unique_lock lock(mutex_);
            changed_.wait_for(lock, 10ms);
        }
    }
    int accepted() const {
        std::lock_guard lock(mutex_);
        return accepted_;
    }
    int open() const {
        std::lock_guard lock(mutex_);
        return open_;
    }

protected:
    struct Conn {
        int fd;
        std::string in;
        SteadyClock::time_point last_received;
        bool close = false;  // Set by a subclass: the server closes it after this turn.
    };
    virtual void on_data(Conn& c) = 0;
    virtual void on_tick(Conn&) {}
    void notify() { changed_.notify_all(); }

    mutable std::mutex mutex_;
    std::condition_variable changed_;

private:
    void serve() {
        constexpr std::size_t kMaxConns = 256;  // The tests use at most 50.
        std::vector<pollfd> fds;
        for (;;) {
            fds.clear();
            fds.push_back({wake_[0], POLLIN, 0});
            fds.push_back({listener_, POLLIN, 0});
            for (const Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
            // The timeout only paces on_tick (the idle checks); events wake us at once.
            if (::poll(fds.data(), fds.size(), 10) < 0 && errno != EINTR) return;
            if (fds[0].revents != 0) return;
            if ((fds[1].revents & POLLIN) && conns_.size() < kMaxConns) {
                const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd >= 0) {
                    const int one = 1;
                    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conns_.push_back(Conn{fd, {}, SteadyClock::now()});
                    std::lock_guard lock(mutex_);
                    ++accepted_;
                    ++open_;
                    notify();
                }
            }
            // conns_ may have grown after fds was built: only the first ones were polled.
            for (std::size_t i = 2; i < fds.size(); ++i) {
                Conn& c = conns_[i - 2];
                if (fds[i].revents == 0) continue;
                char buf[4096];
                const ssize_t n = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n > 0) {
                    c.in.append(buf, static_cast<std::size_t>(n));
                    c.last_received = SteadyClock::now();
                    on_data(c);
                } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                    c.close = true;  // The client closed it (stop()).
                }
            }
            for (Conn& c : conns_) on_tick(c);
            for (auto it = conns_.begin(); it != conns_.end();) {
                if (!it->close) {
                    ++it;
                    continue;
                }
                ::close(it->fd);
                it = conns_.erase(it);
                std::lock_guard lock(mutex_);
                --open_;
                notify();
            }
        }
    }

    int listener_ = -1;
    int wake_[2] = {-1, -1};
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::vector<Conn> conns_;  // Server thread only.
    int accepted_ = 0;         // Guarded by mutex_.
    int open_ = 0;             // Guarded by mutex_.
};

// Echoes every byte, in two writes (the first byte, then the rest) so the
// engine sees 8-byte echoes split across reads; closes any connection that
// sent nothing for `idle_limit`, like a server with a read deadline.
class IdleClosingEchoServer final : public PollServer {
public:
    explicit IdleClosingEchoServer(std::chrono::milliseconds idle_limit) : idle_limit_(idle_limit) { start(); }
    ~IdleClosingEchoServer() override { shut_down(); }

    int idle_closes() const {
        std::lock_guard lock(mutex_);
        return idle_closes_;
    }

private:
    void on_data(Conn& c) override {
        send_all(c.fd, c.in.data(), 1);
        send_all(c.fd, c.in.data() + 1, c.in.size() - 1);
        c.in.clear();
    }
    void on_tick(Conn& c) override {
        if (c.close || SteadyClock::now() - c.last_received <= idle_limit_) return;
        c.close = true;
        std::lock_guard lock(mutex_);
        ++idle_closes_;
    }

    std::chrono::milliseconds idle_limit_;
    int idle_closes_ = 0;  // Guarded by mutex_.
};

// Echoes everything and records when each connection's first bytes arrived.
class FirstByteEchoServer final : public PollServer {
public:
    FirstByteEchoServer() { start(); }
    ~FirstByteEchoServer() override { shut_down(); }

    std::vector<SteadyClock::time_point> first_bytes() const {
        std::lock_guard lock(mutex_);
        return first_bytes_;
    }

private:
    void on_data(Conn& c) override {
        if (seen_.insert(c.fd).second) {
            std::lock_guard lock(mutex_);
            first_bytes_.push_back(c.last_received);
            notify();
        }
        send_all(c.fd, c.in.data(), c.in.size());
        c.in.clear();
    }

    std::set<int> seen_;                                // Server thread only.
    std::vector<SteadyClock::time_point> first_bytes_;  // Guarded by mutex_.
};

// MQTT 3.1.1 just enough for keep-alive: records each CONNECT, answers it with
// CONNACK(return_code), then sends a PUBLISH the client never asked for (with
// a two-byte remaining length, in two pieces) and answers every PINGREQ with a
// PINGRESP written one byte at a time.
class MqttResponder final : public PollServer {
public:
    explicit MqttResponder(std::uint8_t return_code) : return_code_(return_code) { start(); }
    ~MqttResponder() override { shut_down(); }

    std::vector<std::string> connects() const {
        std::lock_guard lock(mutex_);
        return connects_;
    }
    int pingreqs() const {
        std::lock_guard lock(mutex_);
        return pingreqs_;
    }
    int malformed() const {
        std::lock_guard lock(mutex_);
        return malformed_;
    }

private:
    void on_data(Conn& c) override {
        for (;;) {
            // Fixed header: type byte, then the remaining length (section 2.2.3).
            std::size_t length = 0;
            std::size_t header = 1;
            bool complete = false;
            for (int shift = 0; header < c.in.size() && header <= 4; shift += 7) {
                const auto b = static_cast<std::uint8_t>(c.in[header++]);
                length |= static_cast<std::size_t>(b & 0x7F) << shift;
                if ((b & 0x80) == 0) {
                    complete = true;
                    break;
                }
            }
            if (!complete || c.in.size() < header + length) return;
            const std::string packet = c.in.substr(0, header + length);
            c.in.erase(0, header + length);
            const auto type = static_cast<std::uint8_t>(packet[0]);
            if (type == 0x10) {
                {
                    std::lock_guard lock(mutex_);
                    connects_.push_back(packet);
                    notify();
                }
                const char connack[] = {0x20, 0x02, 0x00, static_cast<char>(return_code_)};
                send_all(c.fd, connack, sizeof(connack));
                if (return_code_ != 0) {
                    c.close = true;  // Section 3.2.2.3: the server closes after a refusal.
                    return;
                }
                std::string publish = {static_cast<char>(0x30), static_cast<char>(0xC8), 0x01};
                publish.append(200, 'p');  // Remaining length 200 = 0xC8 0x01.
                send_all(c.fd, publish.data(), 100);
                send_all(c.fd, publish.data() + 100, publish.size() - 100);
            } else if (type == 0xC0 && packet.size() == 2) {
                {
                    std::lock_guard lock(mutex_);
                    ++pingreqs_;
                    notify();
                }
                const char pingresp[] = {static_cast<char>(0xD0), 0x00};
                send_all(c.fd, pingresp, 1);
                send_all(c.fd, pingresp + 1, 1);
            } else {
                std::lock_guard lock(mutex_);
                ++malformed_;
                notify();
            }
        }
    }

    std::uint8_t return_code_;
    std::vector<std::string> connects_;  // Guarded by mutex_.
    int pingreqs_ = 0;                   // Guarded by mutex_.
    int malformed_ = 0;                  // Guarded by mutex_.
};

// An engine running on its own thread; stopped and joined on destruction.
class RunningEngine {
public:
    explicit RunningEngine(const LoadOptions& options) {
        Result<std::unique_ptr<LoadEngine>> created = make_engine(options);
        if (!created) throw std::runtime_error(created.error().message);
        engine_ = std::move(*created);
        thread_ = std::thread([this] {
            engine_->run();
            std::lock_guard lock(mutex_);
            run_returned_ = true;
            returned_.notify_all();
        });
    }
    ~RunningEngine() {
        engine_->stop();
        if (!wait_run_returned(10s)) {
            // Joining would hang the whole test binary; end it loudly instead.
            std::fprintf(stderr, "FATAL: LoadEngine::run() did not return within 10 s of stop()\n");
            std::abort();
        }
        thread_.join();
    }
    RunningEngine(const RunningEngine&) = delete;
    RunningEngine& operator=(const RunningEngine&) = delete;

    LoadEngine& operator*() { return *engine_; }
    LoadEngine* operator->() { return engine_.get(); }

    bool wait_run_returned(std::chrono::milliseconds limit) {
        std::unique_lock lock(mutex_);
        return returned_.wait_for(lock, limit, [this] { return run_returned_; });
    }

    // Polls stats() until `done` holds or `limit` passes; returns the last snapshot.
    // (The engine has no change notification; the poll interval is short and
    // only bounds how soon we notice, never what we assert.)
    LoadStats wait_stats(const std::function<bool(const LoadStats&)>& done, std::chrono::milliseconds limit) {
        const auto deadline = SteadyClock::now() + limit;
        LoadStats s = engine_->stats();
        while (!done(s) && SteadyClock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
            s = engine_->stats();
        }
        return s;
    }

private:
    std::unique_ptr<LoadEngine> engine_;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable returned_;
    bool run_returned_ = false;
};

std::string describe(const LoadStats& s) {
    return "connected=" + std::to_string(s.connected) + " failures=" + std::to_string(s.connect_failures) +
           " open=" + std::to_string(s.open) + " round_trips=" + std::to_string(s.round_trips) +
           " silenced=" + std::to_string(s.silenced) + " false_closes=" + std::to_string(s.false_closes) +
           " detected=" + std::to_string(s.detect_after_silence_ns.size()) + " first_error='" + s.first_error + "'";
}

TEST(RawEngine, EchoSilencedConnectionsAreDetectedAndLiveOnesAreNot) {
    constexpr auto kIdleLimit = 500ms;  // Ten heartbeats: a live connection never comes near it.
    IdleClosingEchoServer server(kIdleLimit);
    LoadOptions options;
    options.server = server.address();
    options.protocol = Protocol::echo;
    options.connections = 50;
    options.heartbeat = Duration::milliseconds(50);
    options.ramp_per_second = 1000;
    RunningEngine engine(options);

    LoadStats s = engine.wait_stats([](const LoadStats& x) { return x.connected == 50 && x.round_trips > 200; }, 10s);
    ASSERT_EQ(s.connected, 50u) << describe(s);
    ASSERT_GT(s.round_trips, 200u) << describe(s);
    EXPECT_EQ(s.open, 50u);
    EXPECT_EQ(s.connect_failures, 0u);

    // A fifth of 50: exactly 10 go silent (every fifth connection).
    engine->silence(0.2);
    s = engine.wait_stats([](const LoadStats& x) { return x.detect_after_silence_ns.size() >= 10; }, 10s);
    ASSERT_EQ(s.detect_after_silence_ns.size(), 10u) << describe(s);
    // The other 40 keep echoing: wait for about a dozen more heartbeats each,
    // longer than the idle limit, so a live connection wrongly closed would show.
    const std::uint64_t before = s.round_trips;
    s = engine.wait_stats([before](const LoadStats& x) { return x.round_trips >= before + 40 * 12; }, 10s);
    ASSERT_GE(s.round_trips, before + 40 * 12) << describe(s);

    EXPECT_EQ(s.silenced, 10u);
    EXPECT_EQ(s.false_closes, 0u) << describe(s);
    EXPECT_EQ(s.open, 40u);
    EXPECT_EQ(s.detect_after_silence_ns.size(), 10u);
    ASSERT_EQ(s.detect_after_last_send_ns.size(), 10u);
    EXPECT_EQ(server.idle_closes(), 10);
    for (std::size_t i = 0; i < 10; ++i) {
        const std::int64_t after_silence = s.detect_after_silence_ns[i];
        const std::int64_t after_last_send = s.detect_after_last_send_ns[i];
        // The server closed at least kIdleLimit after the last bytes it received.
        EXPECT_GE(after_last_send, std::chrono::nanoseconds(kIdleLimit).count()) << i;
        EXPECT_GT(after_silence, 0) << i;
        EXPECT_LE(after_silence, after_last_send) << i;  // The last send came before the silence.
        EXPECT_LT(after_last_send, std::chrono::nanoseconds(5s).count()) << i;
    }

    // stop() closes everything and run() returns.
    engine->stop();
    EXPECT_TRUE(engine.wait_run_returned(10s));
    EXPECT_TRUE(server.wait_until([&] { return server.open() == 0; }, 10s)) << server.open() << " still open";
    s = engine->stats();
    EXPECT_EQ(s.open, 0u);
    EXPECT_EQ(s.false_closes, 0u);  // Our own close is nobody's false positive.
    EXPECT_EQ(server.accepted(), 50);
}

// Checks one recorded CONNECT: MQTT 3.1.1 section 3.1. Returns the client id.
std::string check_connect(const std::string& p, std::uint16_t keep_alive) {
    EXPECT_GE(p.size(), 14u);
    if (p.size() < 14) return {};
    EXPECT_EQ(static_cast<std::uint8_t>(p[0]), 0x10);
    EXPECT_EQ(static_cast<std::size_t>(static_cast<std::uint8_t>(p[1])), p.size() - 2);  // Short: one length byte.
    EXPECT_EQ(p.substr(2, 6), std::string("\x00\x04MQTT", 6));
    EXPECT_EQ(p[8], 0x04) << "protocol level 4 (3.1.1)";
    EXPECT_EQ(p[9], 0x02) << "connect flags: clean session only";
    EXPECT_EQ((static_cast<std::uint8_t>(p[10]) << 8) | static_cast<std::uint8_t>(p[11]), keep_alive);
    const std::size_t id_size = (static_cast<std::uint8_t>(p[12]) << 8) | static_cast<std::uint8_t>(p[13]);
    EXPECT_EQ(id_size, p.size() - 14);
    return p.substr(14);
}

TEST(RawEngine, MqttSendsWellFormedConnectAndCountsPingresps) {
    MqttResponder server(0);
    LoadOptions options;
    options.server = server.address();
    options.protocol = Protocol::mqtt;
    options.connections = 5;
    options.heartbeat = Duration::milliseconds(100);
    options.ramp_per_second = 1000;
    options.seed = 7;
    RunningEngine engine(options);

    LoadStats s = engine.wait_stats([](const LoadStats& x) { return x.connected == 5 && x.round_trips >= 20; }, 10s);
    ASSERT_EQ(s.connected, 5u) << describe(s);
    ASSERT_GE(s.round_trips, 20u) << describe(s);
    EXPECT_EQ(s.connect_failures, 0u) << describe(s);
    EXPECT_EQ(s.open, 5u);

    const std::vector<std::string> connects = server.connects();
    ASSERT_EQ(connects.size(), 5u);
    std::set<std::string> ids;
    for (const std::string& p : connects) ids.insert(check_connect(p, 1));  // 100 ms rounds up to 1 s.
    EXPECT_EQ(ids, (std::set<std::string>{"ll-7-0", "ll-7-1", "ll-7-2", "ll-7-3", "ll-7-4"}));

    engine->stop();
    ASSERT_TRUE(engine.wait_run_returned(10s));
    s = engine->stats();
    // Every round trip is a PINGRESP to a PINGREQ the server saw: the PUBLISH was skipped, not counted.
    EXPECT_LE(s.round_trips, static_cast<std::uint64_t>(server.pingreqs()));
    EXPECT_EQ(server.malformed(), 0) << "the engine sent something other than CONNECT and PINGREQ";
    EXPECT_EQ(s.false_closes, 0u);
    EXPECT_EQ(s.open, 0u);
}

TEST(RawEngine, MqttKeepAliveIsTheHeartbeatRoundedUpToSeconds) {
    MqttResponder server(0);
    LoadOptions options;
    options.server = server.address();
    options.protocol = Protocol::mqtt;
    options.connections = 1;
    options.heartbeat = Duration::milliseconds(1500);
    RunningEngine engine(options);

    ASSERT_TRUE(server.wait_until([&] { return !server.connects().empty(); }, 10s));
    check_connect(server.connects().front(), 2);
    const LoadStats s = engine.wait_stats([](const LoadStats& x) { return x.connected == 1; }, 10s);
    EXPECT_EQ(s.connected, 1u) << describe(s);
}

TEST(RawEngine, MqttRefusedConnackIsAConnectFailureWithTheReason) {
    MqttResponder server(5);  // Not authorized.
    LoadOptions options;
    options.server = server.address();
    options.protocol = Protocol::mqtt;
    options.connections = 3;
    options.heartbeat = Duration::milliseconds(100);
    RunningEngine engine(options);

    // Every connection ended, so run() returns on its own.
    ASSERT_TRUE(engine.wait_run_returned(10s));
    const LoadStats s = engine->stats();
    EXPECT_EQ(s.connect_failures, 3u) << describe(s);
    EXPECT_EQ(s.connected, 0u);
    EXPECT_EQ(s.open, 0u);
    EXPECT_EQ(s.false_closes, 0u);
    EXPECT_NE(s.first_error.find("return code 5 (not authorized)"), std::string::npos) << s.first_error;
    EXPECT_NE(s.first_error.find(server.address()), std::string::npos) << s.first_error;
}

TEST(RawEngine, ConnectToAClosedPortCountsFailuresWithTheError) {
    // Bound but never listening: the port is ours, and a SYN to it is answered with RST.
    std::uint16_t port = 0;
    const int bound = loopback_socket(port, false);
    LoadOptions options;
    options.server = "127.0.0.1:" + std::to_string(port);
    options.protocol = Protocol::echo;
    options.connections = 3;
    options.heartbeat = Duration::milliseconds(100);
    options.ramp_per_second = 1000;
    RunningEngine engine(options);

    const bool returned = engine.wait_run_returned(10s);
    ::close(bound);
    ASSERT_TRUE(returned) << "run() should return once every connection has failed";
    const LoadStats s = engine->stats();
    EXPECT_EQ(s.connect_failures, 3u) << describe(s);
    EXPECT_EQ(s.connected, 0u);
    EXPECT_EQ(s.open, 0u);
    EXPECT_NE(s.first_error.find(options.server), std::string::npos) << s.first_error;
    EXPECT_NE(s.first_error.find("refused"), std::string::npos) << s.first_error;
}

TEST(RawEngine, RejectsOptionsItCannotRun) {
    LoadOptions options;
    options.protocol = Protocol::echo;
    options.connections = 0;
    EXPECT_FALSE(make_engine(options).ok());
    options.connections = 1;
    options.heartbeat = Duration::zero();
    EXPECT_FALSE(make_engine(options).ok());
    options.heartbeat = Duration::seconds(1);
    options.server = "nowhere";
    EXPECT_FALSE(make_engine(options).ok());
    options.server = "127.0.0.1:1";
    options.ramp_per_second = -1;
    EXPECT_FALSE(make_engine(options).ok());
    options.ramp_per_second = 10;
    options.protocol = Protocol::mqtt;
    options.heartbeat = Duration::seconds(70'000);  // Keep-alive is 16 bits of seconds.
    EXPECT_FALSE(make_engine(options).ok());
    options.heartbeat = Duration::seconds(1);
    EXPECT_TRUE(make_engine(options).ok());
}

// Uniform arrivals: connections opened all at once still ping on phases
// spread over the whole heartbeat interval (40 uniform phases span less
// than half of it with probability 40 / 2^39), and every round trip lands in
// the latency histogram.
TEST(RawEngine, UniformArrivalsSpreadFirstPingsOverTheIntervalAndTimeEachRoundTrip) {
    constexpr int kCount = 40;
    FirstByteEchoServer server;
    LoadOptions options;
    options.server = server.address();
    options.protocol = Protocol::echo;
    options.connections = kCount;
    options.heartbeat = Duration::seconds(1);
    options.ramp_per_second = 0;  // All at once: only the arrival model spreads them.
    options.arrivals = Arrivals::uniform;
    options.seed = 5;
    RunningEngine engine(options);
    ASSERT_TRUE(server.wait_until([&] { return server.first_bytes().size() == kCount; }, 20s))
        << server.first_bytes().size() << " of " << kCount << " pinged";
    const std::vector<SteadyClock::time_point> first = server.first_bytes();
    const auto [earliest, latest] = std::minmax_element(first.begin(), first.end());
    EXPECT_GT(*latest - *earliest, 500ms) << "first pings bunched together";

    const LoadStats s = engine.wait_stats([](const LoadStats& x) { return x.round_trips >= 2 * kCount; }, 20s);
    ASSERT_GE(s.round_trips, 2u * kCount) << describe(s);
    EXPECT_EQ(s.round_trip_latency.count(), s.round_trips) << "one latency sample per round trip";
    EXPECT_GE(s.round_trip_latency.quantile_ns(0.5), 0);
    EXPECT_LT(s.round_trip_latency.quantile_ns(1.0), std::chrono::nanoseconds(1s).count())
        << "a loopback echo is far below the interval";
}

}  // namespace
}  // namespace lifeline::loadgen

namespace lifeline::loadgen {
namespace {

TEST(IsSilenced, PicksExactlyTheFractionOfAnyCount) {
    for (std::uint64_t n : {1u, 7u, 50u, 500u, 19'608u}) {
        for (double f : {0.0, 0.1, 0.25, 1.0}) {
            std::uint64_t chosen = 0;
            for (std::uint64_t i = 0; i < n; ++i) chosen += is_silenced(i, f) ? 1 : 0;
            EXPECT_EQ(chosen, static_cast<std::uint64_t>(static_cast<double>(n) * f)) << n << " x " << f;
        }
    }
}

}  // namespace
}  // namespace lifeline::loadgen
