// The client's raw mode, its stuck-reader fault injection (testing::stop_reading)
// and its own timeout, on real loopback sockets: an in-process lifeline::Server
// where a real server is what matters, a plain socket playing the server where
// the test must control every byte (and read the client's PINGs itself).
// Every wait is on an event, a socket or a frame, with a generous upper bound.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "lifeline/client.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/server.hpp"
#include "lifeline/testing.hpp"

namespace lifeline {

// GoogleTest prints Durations as "1.2s", not as bytes (found by ADL, so here).
void PrintTo(Duration d, std::ostream* os) { *os << to_string(d); }

namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Everything a Client (or a Server: events only) reports, for the test thread to wait on.
class EventLog {
public:
    ClientCallbacks callbacks() {
        ClientCallbacks c;
        c.on_event = [this](const Event& e) {
            std::lock_guard lock(mutex_);
            events_.push_back(e);
            changed_.notify_all();
        };
        c.on_message = [this](int, std::span<const std::uint8_t> payload) {
            std::lock_guard lock(mutex_);
            received_.append(reinterpret_cast<const char*>(payload.data()), payload.size());
            changed_.notify_all();
        };
        return c;
    }
    void run_returned() {
        std::lock_guard lock(mutex_);
        run_returned_ = true;
        changed_.notify_all();
    }

    // The first event of `kind` (seen before or arriving within `limit`).
    std::optional<Event> wait_for(EventKind kind, std::chrono::milliseconds limit) {
        std::unique_lock lock(mutex_);
        std::optional<Event> found;
        changed_.wait_for(lock, limit, [&] {
            for (const Event& e : events_) {
                if (e.kind == kind) {
                    found = e;
                    return true;
                }
            }
            return false;
        });
        return found;
    }
    bool wait_received(const std::string& bytes, std::chrono::milliseconds limit) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, limit, [&] { return received_ == bytes; });
    }
    bool wait_run_returned(std::chrono::milliseconds limit) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, limit, [&] { return run_returned_; });
    }
    int count(EventKind kind) const {
        std::lock_guard lock(mutex_);
        int n = 0;
        for (const Event& e : events_) n += e.kind == kind ? 1 : 0;
        return n;
    }
    std::string dump() const {
        std::lock_guard lock(mutex_);
        std::string out;
        for (const Event& e : events_) out += to_json_line(e) + "\n";
        return out;
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Event> events_;
    std::string received_;
    bool run_returned_ = false;
};

// A Client running on its own thread; stopped and joined on destruction.
class RunningClient {
public:
    RunningClient(const ClientOptions& options, EventLog& log) : log_(log) {
        auto created = Client::create(options, log.callbacks());
        if (!created) throw std::runtime_error(created.error().message);
        client_ = std::move(*created);
        thread_ = std::thread([this] {
            client_->run();
            log_.run_returned();
        });
    }
    ~RunningClient() {
        client_->stop();
        thread_.join();
    }
    Client& operator*() { return *client_; }
    Client* operator->() { return client_.get(); }

private:
    EventLog& log_;
    std::unique_ptr<Client> client_;
    std::thread thread_;
};

// An in-process lifeline::Server on an ephemeral loopback port.
class RunningServer {
public:
    explicit RunningServer(ServerOptions options) {
        options.listen = "127.0.0.1:0";
        ServerCallbacks callbacks;
        callbacks.on_event = log_.callbacks().on_event;
        auto created = Server::create(options, callbacks);
        if (!created) throw std::runtime_error(created.error().message);
        server_ = std::move(*created);
        thread_ = std::thread([this] { server_->run(); });
    }
    ~RunningServer() {
        server_->stop();
        thread_.join();
    }
    std::string address() const { return server_->local_address(); }
    std::optional<Event> wait_for(EventKind kind, std::chrono::milliseconds limit) {
        return log_.wait_for(kind, limit);
    }

private:
    EventLog log_;
    std::unique_ptr<Server> server_;
    std::thread thread_;
};

class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        reset();
        fd_ = std::exchange(o.fd_, -1);
        return *this;
    }
    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_;
};

// A plain listener on 127.0.0.1, port chosen by the kernel. It accepts only
// when asked: until then the kernel completes handshakes into the backlog.
// A nonzero `receive_buffer` fixes SO_RCVBUF of the accepted sockets (no autotuning).
class PlainListener {
public:
    explicit PlainListener(int receive_buffer = 0) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        if (receive_buffer > 0 &&
            ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)) != 0)
            throw std::runtime_error("SO_RCVBUF");
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd_.get(), 8) != 0)
            throw std::runtime_error("listen");
        socklen_t len = sizeof(addr);
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    // The next connection, non-blocking; an invalid Fd at the deadline.
    Fd accept(std::chrono::milliseconds limit) {
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return Fd();
        return Fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    }

private:
    Fd fd_;
    std::uint16_t port_ = 0;
};

std::chrono::milliseconds left_until(SteadyClock::time_point deadline) {
    return std::max(0ms, std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now()));
}

// The test playing a framed server on a plain socket: decodes what the client
// sends (HELLO first, then PINGs, DATA, CLOSE) and writes raw bytes back.
class FakeServer {
public:
    explicit FakeServer(Fd fd) : fd_(std::move(fd)) {}
    int fd() const { return fd_.get(); }

    // Reads and decodes everything available now. False once the client's side is gone.
    bool pump() {
        std::uint8_t buf[64 * 1024];
        while (true) {
            const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                gone_ = true;
                return false;
            }
            std::span<const std::uint8_t> input(buf, static_cast<std::size_t>(n));
            while (true) {
                FrameDecoder::Step step = decoder_.next(input);
                if (step.error) throw std::runtime_error("client sent a bad frame: " + step.error->detail);
                if (!step.frame) break;
                if (const auto* hello = std::get_if<Hello>(&*step.frame)) hello_ = *hello;
                if (std::holds_alternative<Ping>(*step.frame)) ping_times_.push_back(SteadyClock::now());
                if (const auto* data = std::get_if<Data>(&*step.frame)) data_bytes_ += data->payload.size();
                if (const auto* close = std::get_if<Close>(&*step.frame)) close_ = *close;
            }
        }
    }
    // Pumps until `done()` or the deadline; true if done.
    bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
        const auto deadline = SteadyClock::now() + limit;
        while (!done()) {
            if (gone_) return false;
            const auto left = left_until(deadline);
            if (left.count() == 0) return false;
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) == 1) pump();
        }
        return true;
    }
    void send_frame(const Frame& frame) {
        std::vector<std::uint8_t> bytes;
        ASSERT_TRUE(append_frame(bytes, frame).ok());
        // Small frames into an empty send buffer: the kernel takes them whole.
        ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    }
    // Reads the HELLO and answers with WELCOME(interval, timeout).
    void handshake(std::uint32_t interval_ms, std::uint32_t timeout_ms) {
        ASSERT_TRUE(pump_until([this] { return hello_.has_value(); }, 5s)) << "no HELLO";
        send_frame(Welcome{kProtocolVersion, interval_ms, timeout_ms, hello_->id, {}});
    }

    // Pushes DATA frames as fast as the socket takes them, while reading all
    // the client sends, until the socket has refused more for `blocked_for`,
    // `min_pings` PINGs arrived in that time, and `until()` holds. True if that
    // happened before the deadline: the client stopped reading, yet kept pinging.
    bool push_until_blocked(std::chrono::milliseconds blocked_for, std::size_t min_pings,
                            const std::function<bool()>& until, std::chrono::milliseconds limit) {
        std::vector<std::uint8_t> frame;
        const std::vector<std::uint8_t> payload(16 * 1024, 0x5a);
        if (!append_frame(frame, Data{payload}).ok()) return false;
        const auto deadline = SteadyClock::now() + limit;
        std::size_t offset = 0;  // Into `frame`, which is sent over and over (frames may split across writes).
        auto last_write = SteadyClock::now();
        while (SteadyClock::now() < deadline && !gone_) {
            while (true) {
                const ssize_t n =
                    ::send(fd_.get(), frame.data() + offset, frame.size() - offset, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n <= 0) break;
                last_write = SteadyClock::now();
                offset = (offset + static_cast<std::size_t>(n)) % frame.size();
            }
            std::size_t pings_since = 0;
            for (const auto& t : ping_times_) pings_since += t > last_write ? 1 : 0;
            if (SteadyClock::now() - last_write >= blocked_for && pings_since >= min_pings && until()) return true;
            // Wake for the client's PINGs, for room to write, or to re-check the clock.
            pollfd p{fd_.get(), POLLIN | POLLOUT, 0};
            if (::poll(&p, 1, static_cast<int>(std::min(left_until(deadline), 50ms).count())) == 1 &&
                (p.revents & (POLLIN | POLLHUP | POLLERR)))
                pump();
        }
        return false;
    }

    const std::optional<Hello>& hello() const { return hello_; }
    std::size_t pings() const { return ping_times_.size(); }
    std::size_t data_bytes() const { return data_bytes_; }
    const std::optional<Close>& close_frame() const { return close_; }
    void close() { fd_.reset(); }

private:
    Fd fd_;
    FrameDecoder decoder_{DecoderRole::server};
    std::optional<Hello> hello_;
    std::optional<Close> close_;
    std::vector<SteadyClock::time_point> ping_times_;
    std::size_t data_bytes_ = 0;
    bool gone_ = false;
};

ClientOptions client_options(const std::string& server, ClientMode mode) {
    ClientOptions o;
    o.server = server;
    o.mode = mode;
    o.id = "lab";
    o.keepalive = KeepalivePolicy::disabled();
    o.heartbeat = Duration::milliseconds(100);
    o.timeout = Duration::milliseconds(400);
    o.seed = 1;
    return o;
}

// ---- Raw mode ---------------------------------------------------------------

TEST(ClientModes, RawClientTalksToRawServerAndSeesItsClose) {
    ServerOptions so;
    so.mode = ServerMode::raw;
    so.echo = true;
    so.idle_timeout = Duration::seconds(1);  // Long enough for the echo to come back first.
    RunningServer server(so);
    EventLog log;
    RunningClient client(client_options(server.address(), ClientMode::raw), log);

    auto connect = log.wait_for(EventKind::connect, 5s);
    ASSERT_TRUE(connect) << log.dump();
    const std::string line = "hello raw\n";
    client->send(0, {reinterpret_cast<const std::uint8_t*>(line.data()), line.size()});
    ASSERT_TRUE(log.wait_received(line, 5s)) << "the raw server's echo did not arrive";

    // The raw server closes after 1 s without bytes: an orderly FIN.
    auto closed = log.wait_for(EventKind::closed, 5s);
    ASSERT_TRUE(closed) << log.dump();
    EXPECT_EQ(closed->reason, DisconnectReason::peer_closed) << log.dump();
    EXPECT_EQ(closed->bytes_out, line.size());
    EXPECT_EQ(closed->bytes_in, line.size());
    // Raw mode: every byte is application data.
    EXPECT_EQ(closed->data_out, line.size());
    EXPECT_EQ(closed->data_in, line.size());
    EXPECT_EQ(closed->bytes_unsent, 0u);
    auto server_closed = server.wait_for(EventKind::closed, 5s);
    ASSERT_TRUE(server_closed);
    EXPECT_EQ(server_closed->data_in, line.size());
    EXPECT_EQ(server_closed->data_out, line.size());                   // The echo.
    EXPECT_EQ(server_closed->reason, DisconnectReason::idle_timeout);  // Not a protocol error: no HELLO arrived.

    ASSERT_TRUE(log.wait_run_returned(5s));  // Without --reconnect, the client is done.
    EXPECT_EQ(log.count(EventKind::connect), 1);
    EXPECT_EQ(log.count(EventKind::closed), 1);
    EXPECT_EQ(log.count(EventKind::hello), 0);
    EXPECT_EQ(log.count(EventKind::dead), 0);
}

TEST(ClientModes, RawClientSendsNoHelloAndHasNoHandshakeDeadline) {
    PlainListener listener;
    EventLog log;
    ClientOptions o = client_options(listener.address(), ClientMode::raw);
    o.connect_timeout = Duration::milliseconds(100);  // Would cut a framed client off: no WELCOME ever comes.
    RunningClient client(o, log);

    // The kernel completes the handshake into the backlog; nothing has accepted or read yet.
    ASSERT_TRUE(log.wait_for(EventKind::connect, 5s)) << log.dump();
    Fd peer = listener.accept(5s);
    ASSERT_GE(peer.get(), 0);
    // Three connect timeouts later, nothing has arrived and the client is still connected.
    pollfd p{peer.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 300), 0) << "a raw client sent bytes of its own (a HELLO?)";
    EXPECT_EQ(log.count(EventKind::closed), 0) << log.dump();
    EXPECT_EQ(log.count(EventKind::error), 0) << log.dump();

    // The first bytes on the wire are exactly what the application sent.
    const std::string marker = "marker\n";
    client->send(0, {reinterpret_cast<const std::uint8_t*>(marker.data()), marker.size()});
    std::string got;
    const auto deadline = SteadyClock::now() + 5s;
    while (got.size() < marker.size() && SteadyClock::now() < deadline) {
        pollfd q{peer.get(), POLLIN, 0};
        if (::poll(&q, 1, static_cast<int>(left_until(deadline).count())) != 1) break;
        char buf[64];
        const ssize_t n = ::recv(peer.get(), buf, sizeof(buf), 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    EXPECT_EQ(got, marker);

    peer.reset();  // FIN.
    auto closed = log.wait_for(EventKind::closed, 5s);
    ASSERT_TRUE(closed) << log.dump();
    EXPECT_EQ(closed->reason, DisconnectReason::peer_closed);
    ASSERT_TRUE(log.wait_run_returned(5s));
    EXPECT_EQ(log.count(EventKind::closed), 1);
}

// ---- stop_reading() -----------------------------------------------------------

TEST(ClientModes, StoppedReaderFillsItsWindowKeepsPingingAndNeverConvicts) {
    // A small fixed receive buffer here and 8 MiB from the client: more than
    // the client's socket can hold (tcp_wmem max is 4 MiB), so most of it waits
    // in the client's output queue and leaves only through EPOLLOUT.
    PlainListener listener(64 * 1024);
    EventLog log;
    ClientOptions o = client_options(listener.address(), ClientMode::framed);
    o.output_budget = 32 << 20;
    RunningClient client(o, log);
    FakeServer server(listener.accept(5s));
    ASSERT_GE(server.fd(), 0);
    server.handshake(100, 400);
    ASSERT_TRUE(log.wait_for(EventKind::hello, 5s)) << log.dump();

    testing::stop_reading(*client);
    // The client's own sends still leave, through EPOLLOUT, which must keep working.
    const std::vector<std::uint8_t> chunk(64 * 1024, 0x42);
    constexpr int kChunks = 128;
    for (int i = 0; i < kChunks; ++i) client->send(0, chunk);

    // The socket refuses our data for 4 timeouts while PINGs keep coming.
    const bool blocked = server.push_until_blocked(
        1600ms, 10, [&] { return server.data_bytes() == kChunks * chunk.size(); }, 20s);
    EXPECT_TRUE(blocked) << "pings=" << server.pings() << " data=" << server.data_bytes() << "\n" << log.dump();
    EXPECT_EQ(log.count(EventKind::dead), 0) << log.dump();
    EXPECT_EQ(log.count(EventKind::closed), 0) << log.dump();
    EXPECT_FALSE(server.close_frame()) << "the client closed: " << server.close_frame()->reason;

    client->stop();
    auto closed = log.wait_for(EventKind::closed, 5s);
    ASSERT_TRUE(closed) << log.dump();
    EXPECT_EQ(closed->reason, DisconnectReason::shutdown);
    // Framed: DATA payloads count as application data, frame headers and PINGs do not.
    EXPECT_EQ(closed->data_out, kChunks * chunk.size());
    EXPECT_LT(closed->data_out, closed->bytes_out + closed->bytes_unsent);
    ASSERT_TRUE(log.wait_run_returned(5s));
    EXPECT_EQ(log.count(EventKind::closed), 1);
    EXPECT_EQ(log.count(EventKind::dead), 0);
}

TEST(ClientModes, StoppedReaderEndsOnceWhenTheServerGivesUp) {
    PlainListener listener;
    EventLog log;
    RunningClient client(client_options(listener.address(), ClientMode::framed), log);
    FakeServer server(listener.accept(5s));
    ASSERT_GE(server.fd(), 0);
    server.handshake(100, 400);
    ASSERT_TRUE(log.wait_for(EventKind::hello, 5s)) << log.dump();
    testing::stop_reading(*client);
    ASSERT_TRUE(server.push_until_blocked(
        500ms, 3, [] { return true; }, 20s))
        << log.dump();

    // What `serve` does to a slow consumer: close, with data still unsent
    // behind the client's zero window. The client cannot see the FIN (it is
    // stuck behind that data, and the client does not read anyway); its next
    // PING reaches a closed socket and is answered with a reset.
    server.close();
    auto closed = log.wait_for(EventKind::closed, 5s);
    ASSERT_TRUE(closed) << log.dump();
    EXPECT_EQ(closed->reason, DisconnectReason::peer_reset) << log.dump();
    ASSERT_TRUE(log.wait_run_returned(5s)) << "the connection did not end: " << log.dump();
    EXPECT_EQ(log.count(EventKind::closed), 1) << log.dump();
    EXPECT_EQ(log.count(EventKind::dead), 0) << log.dump();
}

// ---- The client's own timeout ---------------------------------------------------

TEST(ClientModes, ClientKeepsItsLongerTimeoutWhenTheServerGrantsLess) {
    PlainListener listener;
    EventLog log;
    ClientOptions o = client_options(listener.address(), ClientMode::framed);
    o.timeout = Duration::milliseconds(1200);
    RunningClient client(o, log);
    FakeServer server(listener.accept(5s));
    ASSERT_GE(server.fd(), 0);
    server.handshake(100, 300);  // Clamped to a quarter of the request.
    const auto welcome_sent = SteadyClock::now();
    ASSERT_EQ(server.hello()->timeout_ms, 1200u);

    auto hello = log.wait_for(EventKind::hello, 5s);
    ASSERT_TRUE(hello) << log.dump();
    EXPECT_EQ(hello->timeout, Duration::milliseconds(1200));
    EXPECT_EQ(hello->interval, Duration::milliseconds(100));

    // From now on the server is silent (it reads the PINGs and never answers).
    ASSERT_TRUE(server.pump_until([&] { return server.close_frame().has_value(); }, 10s)) << log.dump();
    const auto convicted_after = SteadyClock::now() - welcome_sent;
    EXPECT_EQ(server.close_frame()->code, static_cast<std::uint16_t>(CloseCode::heartbeat_timeout));
    EXPECT_GE(convicted_after, 1200ms);
    auto dead = log.wait_for(EventKind::dead, 5s);
    ASSERT_TRUE(dead) << log.dump();
    EXPECT_EQ(dead->budget, Duration::milliseconds(1200));
    EXPECT_GE(dead->silence, Duration::milliseconds(1200));
    EXPECT_GE(server.pings(), 8u);  // It kept pinging at the granted 100 ms meanwhile.
}

TEST(ClientModes, RealServerClampsTheTimeoutButNotTheClientsPatience) {
    ServerOptions so;
    so.heartbeat = Duration::milliseconds(100);
    so.timeout = Duration::milliseconds(300);
    so.max_timeout = Duration::milliseconds(300);
    RunningServer server(so);
    EventLog log;
    ClientOptions o = client_options(server.address(), ClientMode::framed);
    o.timeout = Duration::milliseconds(1200);
    RunningClient client(o, log);
    auto server_hello = server.wait_for(EventKind::hello, 5s);
    ASSERT_TRUE(server_hello);
    EXPECT_EQ(server_hello->timeout, Duration::milliseconds(300));  // What the server judges by.
    auto hello = log.wait_for(EventKind::hello, 5s);
    ASSERT_TRUE(hello) << log.dump();
    EXPECT_EQ(hello->timeout, Duration::milliseconds(1200));  // What the client judges by.
}

}  // namespace
}  // namespace lifeline
