// The lean load engine for servers that do not speak lifeline's protocol: an
// 8-byte echo (the timer-less floor server, Asio) or MQTT 3.1.1 keep-alive
// (mosquitto). One EventLoop on one thread, one LoopObject per connection, all
// connections in one array allocated up front: a connection costs its object
// (at most 128 bytes, asserted) and its socket, nothing else. Timers come from
// the loop's timing wheel.
//
// Per connection: a ramp timer starts the non-blocking connect; the connect
// (and, for MQTT, the CONNACK) must complete within kConnectTimeout; then the
// timer fires every heartbeat and sends 8 bytes (echo) or a PINGREQ (MQTT).
// silence() cancels that timer but keeps the socket read, so the server's
// close is seen and timed. Every connection ends exactly once, in exactly one
// of: a connect failure, a detection (silenced, then closed by the server), a
// false close (not silenced, closed by the server), stop(), or (MQTT only) a
// stream we can no longer frame, which LoadStats has no counter for.
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <span>

#include "lifeline/check.hpp"
#include "loadgen/load_engine.hpp"
#include "net/endpoint.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/monotonic_clock.hpp"

namespace lifeline::loadgen {

Result<std::unique_ptr<LoadEngine>> make_raw_engine(const LoadOptions& options);

namespace {

using runtime::EventLoop;
using runtime::LoopObject;

constexpr int kMaxConnections = 1'000'000;  // Per engine; a process's descriptor limit binds long before.
constexpr Duration kConnectTimeout = Duration::seconds(5);  // TCP connect, plus CONNACK for MQTT.
constexpr std::size_t kScratchSize = 4096;  // Shared by all connections of the loop: reads are consumed at once.
constexpr int kMaxReadsPerEvent = 4;        // Level-triggered: whatever is left wakes us next turn.
constexpr std::size_t kEchoSize = 8;
constexpr std::size_t kMaxConnectSize = 64;  // CONNECT with the longest "ll-<u64>-<u32>" client id is 48 bytes.

// MQTT 3.1.1 (OASIS Standard, 29 October 2014), section 2.2.1: control packet types.
constexpr std::uint8_t kMqttConnack = 2;
constexpr std::uint8_t kMqttPingresp = 13;
constexpr std::array<std::uint8_t, 2> kPingreq = {0xC0, 0x00};  // Section 3.12.

const char* connack_text(std::uint8_t code) {
    // Section 3.2.2.3, table 3.1.
    switch (code) {
        case 1:
            return "unacceptable protocol version";
        case 2:
            return "identifier rejected";
        case 3:
            return "server unavailable";
        case 4:
            return "bad user name or password";
        case 5:
            return "not authorized";
        default:
            return "reserved return code";
    }
}

class RawEngine;

class RawConnection final : public LoopObject {
public:
    RawConnection() = default;
    ~RawConnection() override { assert(fd_ < 0 && !armed() && "RawEngine releases its connections first"); }

    // Called once, before the loop runs.
    void attach(RawEngine& engine, std::uint32_t index) {
        engine_ = &engine;
        index_ = index;
    }
    // Loop thread (or before run()): the ramp timer.
    void start_at(Instant at);
    // Loop thread: stop sending, keep reading. Returns whether it took effect (only open connections go silent).
    bool silence(Instant at);
    // Loop thread: stop(), or the engine's destructor. Closes without reporting anything.
    void release();

    void on_io(std::uint32_t events) override;
    void on_timer() override;

    bool silent() const { return silent_; }
    Instant silenced_at() const { return silenced_at_; }
    Instant last_send() const { return last_send_; }

private:
    enum class State : std::uint8_t { idle, waiting, connecting, handshake, open, done };
    enum class MqttPhase : std::uint8_t { type, length, body };

    void connect();
    void on_connect_completed();
    void opened();
    void send_connect();
    void send_ping();
    // Sends the rest of a short write first, then `bytes` (or drops them on
    // EAGAIN). False if the connection ended.
    bool write_now(std::span<const std::uint8_t> bytes);
    // One non-blocking send: bytes written (0 on EAGAIN), nullopt if the connection ended.
    std::optional<std::size_t> send_some(std::span<const std::uint8_t> bytes);
    void read_available();
    // False if the connection ended while consuming.
    bool consume_echo(std::size_t bytes);
    bool consume_mqtt(std::span<const std::uint8_t> bytes);
    bool on_mqtt_packet();
    void close_fd();
    // Ends this connection as a connect failure (connecting or awaiting CONNACK).
    void fail_connect(const std::string& message);
    // The server ended an open or handshaking connection (EOF, RST, a read or write error).
    void server_gone(int err);
    void fail_protocol(const std::string& message);

    RawEngine* engine_ = nullptr;
    int fd_ = -1;
    std::uint32_t index_ = 0;
    State state_ = State::idle;
    bool silent_ = false;
    std::uint8_t echo_partial_ = 0;  // Bytes of an incomplete 8-byte echo received so far (0..7).
    std::uint8_t pending_size_ = 0;  // Bytes of a short ping write still to send.
    std::array<std::uint8_t, kEchoSize> pending_{};
    // MQTT fixed header parser (section 2.2): type byte, remaining length varint, body.
    MqttPhase mqtt_phase_ = MqttPhase::type;
    std::uint8_t mqtt_type_ = 0;
    std::uint8_t mqtt_length_bytes_ = 0;
    std::uint8_t mqtt_body_size_ = 0;  // CONNACK bytes kept (at most 2).
    std::array<std::uint8_t, 2> mqtt_body_{};
    std::uint32_t mqtt_length_ = 0;     // The packet's remaining length.
    std::uint32_t mqtt_remaining_ = 0;  // Body bytes still to read or skip.
    Instant next_send_;
    // The loop's instant for the turn that wrote: at most one turn before the
    // bytes left, so detect_after_last_send errs long, never short.
    Instant last_send_;
    Instant silenced_at_;
};

// The whole per-connection cost beside the socket: keep it small.
static_assert(sizeof(RawConnection) <= 128, "a connection should fit in two cache lines");

class RawEngine final : public LoadEngine {
public:
    static Result<std::unique_ptr<LoadEngine>> create(const LoadOptions& options);
    ~RawEngine() override;

    void run() override;
    void stop() override;
    void silence(double fraction) override;
    LoadStats stats() const override;

    // For the connections: loop thread only.
    EventLoop& loop() { return *loop_; }
    const LoadOptions& options() const { return options_; }
    const net::Endpoint& endpoint() const { return endpoint_; }
    const net::Endpoint* source(std::uint32_t index) const {
        return sources_.empty() ? nullptr : &sources_[index % sources_.size()];
    }
    std::span<std::uint8_t> scratch() { return scratch_; }
    std::uint16_t keep_alive_s() const { return keep_alive_s_; }
    // `n` round trips completed in this turn, the latest ping having left at `sent`.
    void on_round_trips(std::uint64_t n, Instant sent);
    void on_opened();
    void on_connect_failure(const std::string& message);
    void on_server_close(const RawConnection& connection, Instant seen);
    void on_protocol_error();
    // Every path that ends a connection (except stop()) ends here, once per connection.
    void on_finished();

private:
    RawEngine(const LoadOptions& options, net::Endpoint endpoint, std::vector<net::Endpoint> sources,
              std::unique_ptr<EventLoop> loop, std::uint16_t keep_alive_s);

    LoadOptions options_;
    net::Endpoint endpoint_;
    std::vector<net::Endpoint> sources_;
    // Declared before the connections so it outlives them (they cancel their timers in it).
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<RawConnection[]> connections_;
    std::uint32_t count_;
    std::uint32_t finished_ = 0;  // Loop thread only.
    bool ran_ = false;
    std::uint16_t keep_alive_s_;
    std::array<std::uint8_t, kScratchSize> scratch_{};
    MonotonicClock clock_;
    std::atomic<std::uint64_t> round_trips_{0};
    mutable std::mutex mutex_;
    LoadStats stats_;  // Guarded by mutex_, except round_trips (the atomic above).
};

// ---- RawConnection ----

void RawConnection::start_at(Instant at) {
    assert(state_ == State::idle);
    state_ = State::waiting;
    engine_->loop().schedule(*this, at);
}

void RawConnection::on_timer() {
    switch (state_) {
        case State::waiting:
            connect();
            return;
        case State::connecting:
            fail_connect("TCP connect did not complete within " + to_string(kConnectTimeout));
            return;
        case State::handshake:
            fail_connect("no CONNACK within " + to_string(kConnectTimeout));
            return;
        case State::open:
            send_ping();
            return;
        case State::idle:
        case State::done:
            return;
    }
}

void RawConnection::connect() {
    const net::Endpoint* source = engine_->source(index_);
    Result<int> fd =
        source == nullptr ? net::start_connect(engine_->endpoint()) : net::start_connect(engine_->endpoint(), *source);
    if (!fd) {
        state_ = State::connecting;  // So fail_connect() accounts for it like any other attempt.
        fail_connect(fd.error().message);
        return;
    }
    fd_ = *fd;
    state_ = State::connecting;
    if (auto added = engine_->loop().add(fd_, EPOLLOUT, this); !added) {
        fail_connect(added.error().message);
        return;
    }
    engine_->loop().schedule(*this, engine_->loop().now() + kConnectTimeout);
}

void RawConnection::on_io(std::uint32_t events) {
    switch (state_) {
        case State::connecting:
            on_connect_completed();
            return;
        case State::handshake:
        case State::open:
            if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_available();
            return;
        case State::idle:
        case State::waiting:
        case State::done:
            return;
    }
}

void RawConnection::on_connect_completed() {
    const net::Endpoint* source = engine_->source(index_);
    if (const int err = net::connect_result(fd_); err != 0) {
        fail_connect(system_error(source == nullptr ? "connect to " + engine_->endpoint().to_string()
                                                    : "connect from " + source->to_string() + " to " +
                                                          engine_->endpoint().to_string(),
                                  err)
                         .message);
        return;
    }
    // PINGs are tiny and latency is what the server judges: Nagle must not hold one back.
    if (auto nodelay = net::set_nodelay(fd_); !nodelay) {
        fail_connect(nodelay.error().message);
        return;
    }
    if (auto modified = engine_->loop().modify(fd_, EPOLLIN, this); !modified) {
        fail_connect(modified.error().message);
        return;
    }
    if (engine_->options().protocol == Protocol::echo) {
        opened();
        return;
    }
    state_ = State::handshake;  // The connect deadline keeps running: the CONNACK must come within it.
    send_connect();
}

void RawConnection::opened() {
    state_ = State::open;
    engine_->on_opened();
    engine_->loop().cancel(*this);
    const Instant now = engine_->loop().now();
    if (engine_->options().protocol == Protocol::echo) {
        // The first echo at once: a server with a read deadline starts its clock at accept.
        next_send_ = now;
        send_ping();
        return;
    }
    // The CONNECT just sent counts as this heartbeat's packet.
    next_send_ = now + engine_->options().heartbeat;
    engine_->loop().schedule(*this, next_send_);
}

void RawConnection::send_connect() {
    // MQTT 3.1.1 section 3.1: fixed header, variable header (protocol name,
    // level, flags, keep alive), payload (client identifier). Client ids are
    // "ll-<seed>-<index>": unique across bench processes given distinct seeds.
    std::array<char, 48> id{};
    std::size_t id_size = 0;
    {
        char* p = id.data();
        char* const end = id.data() + id.size();
        *p++ = 'l';
        *p++ = 'l';
        *p++ = '-';
        // A 64-bit seed and index take at most 20 digits each: 3 + 20 + 1 + 20
        // = 44 of the 48 bytes, so neither conversion can fail.
        const std::to_chars_result seed = std::to_chars(p, end - 1, engine_->options().seed);
        LIFELINE_CHECK(seed.ec == std::errc{}, "an MQTT client id fits its buffer");
        p = seed.ptr;
        *p++ = '-';
        const std::to_chars_result index = std::to_chars(p, end, index_);
        LIFELINE_CHECK(index.ec == std::errc{}, "an MQTT client id fits its buffer");
        id_size = static_cast<std::size_t>(index.ptr - id.data());
    }
    const std::uint16_t keep_alive = engine_->keep_alive_s();
    std::array<std::uint8_t, kMaxConnectSize> packet{};
    std::size_t n = 0;
    const std::size_t remaining = 10 + 2 + id_size;
    LIFELINE_CHECK(remaining < 128 && 2 + remaining <= packet.size(),
                   "an MQTT packet fits its one-byte remaining length");
    packet[n++] = 0x10;  // CONNECT
    packet[n++] = static_cast<std::uint8_t>(remaining);
    constexpr std::array<std::uint8_t, 6> kProtocolName = {0x00, 0x04, 'M', 'Q', 'T', 'T'};  // 3.1.2.1.
    for (const std::uint8_t b : kProtocolName) packet[n++] = b;
    packet[n++] = 0x04;                                        // Protocol level 4 = 3.1.1 (3.1.2.2).
    packet[n++] = 0x02;                                        // Clean session, nothing else (3.1.2.4).
    packet[n++] = static_cast<std::uint8_t>(keep_alive >> 8);  // Keep alive, seconds (3.1.2.10).
    packet[n++] = static_cast<std::uint8_t>(keep_alive & 0xFF);
    packet[n++] = static_cast<std::uint8_t>(id_size >> 8);
    packet[n++] = static_cast<std::uint8_t>(id_size & 0xFF);
    std::memcpy(packet.data() + n, id.data(), id_size);
    n += id_size;
    // A fresh socket's send buffer is empty, so the CONNECT goes whole or the connection is broken.
    const ssize_t sent = ::send(fd_, packet.data(), n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
        fail_connect(system_error("send CONNECT to " + engine_->endpoint().to_string(), errno).message);
        return;
    }
    if (static_cast<std::size_t>(sent) != n) {
        fail_connect("short write of CONNECT to " + engine_->endpoint().to_string());
        return;
    }
    last_send_ = engine_->loop().now();
}

void RawConnection::send_ping() {
    assert(state_ == State::open && !silent_);
    const Instant now = engine_->loop().now();
    if (engine_->options().protocol == Protocol::echo) {
        // The loop's timestamp, big-endian: the server only has to give the bytes back.
        const auto stamp = static_cast<std::uint64_t>(now.ns_since_epoch());
        std::array<std::uint8_t, kEchoSize> ping{};
        for (std::size_t i = 0; i < kEchoSize; ++i) ping[i] = static_cast<std::uint8_t>(stamp >> (8 * (7 - i)));
        if (!write_now(ping)) return;
    } else {
        if (!write_now(kPingreq)) return;
    }
    // A fixed rate: the wheel fires up to a tick late, and that lateness must not accumulate.
    next_send_ = next_send_ + engine_->options().heartbeat;
    if (next_send_ <= now) next_send_ = now + engine_->options().heartbeat;  // We were stalled: no burst to catch up.
    engine_->loop().schedule(*this, next_send_);
}

bool RawConnection::write_now(std::span<const std::uint8_t> bytes) {
    LIFELINE_CHECK(bytes.size() <= pending_.size(), "a send consumes at most what is pending");
    if (pending_size_ > 0) {
        const std::optional<std::size_t> flushed = send_some({pending_.data(), pending_size_});
        if (!flushed) return false;
        std::memmove(pending_.data(), pending_.data() + *flushed, pending_size_ - *flushed);
        pending_size_ = static_cast<std::uint8_t>(pending_size_ - *flushed);
        // Still stuck behind the rest of the previous ping: drop this one (see send_some).
        if (pending_size_ > 0) return true;
    }
    const std::optional<std::size_t> written = send_some(bytes);
    if (!written) return false;
    if (*written > 0 && *written < bytes.size()) {
        // The rest goes first at the next heartbeat, so the server's framing stays intact.
        pending_size_ = static_cast<std::uint8_t>(bytes.size() - *written);
        std::memcpy(pending_.data(), bytes.data() + *written, pending_size_);
    }
    return true;
}

std::optional<std::size_t> RawConnection::send_some(std::span<const std::uint8_t> bytes) {
    const ssize_t sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
        // A full socket buffer means the server is not reading, which is exactly
        // what the server under test should notice: drop this ping, count
        // nothing, queue nothing (a queue would only hide the stall from it).
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        server_gone(errno);
        return std::nullopt;
    }
    last_send_ = engine_->loop().now();
    return static_cast<std::size_t>(sent);
}

void RawConnection::read_available() {
    const std::span<std::uint8_t> scratch = engine_->scratch();
    for (int i = 0; i < kMaxReadsPerEvent; ++i) {
        const ssize_t n = ::recv(fd_, scratch.data(), scratch.size(), MSG_DONTWAIT);
        if (n > 0) {
            const auto size = static_cast<std::size_t>(n);
            const bool alive =
                engine_->options().protocol == Protocol::echo ? consume_echo(size) : consume_mqtt(scratch.first(size));
            if (!alive || size < scratch.size()) return;
            continue;
        }
        if (n == 0) {
            server_gone(0);
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        server_gone(errno);
        return;
    }
}

bool RawConnection::consume_echo(std::size_t bytes) {
    // Only the count matters: every 8 bytes back are one round trip, however the reads split them.
    const std::size_t total = echo_partial_ + bytes;
    // One ping in flight at a time (the interval dwarfs the round trip), so the
    // latest send is the one echoed; the turn's instant, like the framed client's.
    if (total >= kEchoSize) engine_->on_round_trips(total / kEchoSize, last_send_);
    echo_partial_ = static_cast<std::uint8_t>(total % kEchoSize);
    return true;
}

bool RawConnection::consume_mqtt(std::span<const std::uint8_t> bytes) {
    // A streaming parser, so a packet may arrive in any number of pieces and
    // anything we do not care about is skipped by its length without buffering.
    std::size_t i = 0;
    while (i < bytes.size()) {
        switch (mqtt_phase_) {
            case MqttPhase::type:
                mqtt_type_ = static_cast<std::uint8_t>(bytes[i++] >> 4);
                mqtt_length_ = 0;
                mqtt_length_bytes_ = 0;
                mqtt_body_size_ = 0;
                mqtt_phase_ = MqttPhase::length;
                break;
            case MqttPhase::length: {
                // Section 2.2.3: 7 bits per byte, least significant first, at most 4 bytes.
                const std::uint8_t b = bytes[i++];
                mqtt_length_ |= static_cast<std::uint32_t>(b & 0x7F) << (7 * mqtt_length_bytes_);
                ++mqtt_length_bytes_;
                if (b & 0x80) {
                    if (mqtt_length_bytes_ == 4) {
                        fail_protocol("malformed MQTT remaining length (more than 4 bytes)");
                        return false;
                    }
                    break;
                }
                mqtt_remaining_ = mqtt_length_;
                mqtt_phase_ = MqttPhase::body;
                if (mqtt_remaining_ == 0 && !on_mqtt_packet()) return false;
                break;
            }
            case MqttPhase::body: {
                const std::size_t take = std::min<std::size_t>(mqtt_remaining_, bytes.size() - i);
                for (std::size_t k = 0; k < take && mqtt_body_size_ < mqtt_body_.size(); ++k) {
                    mqtt_body_[mqtt_body_size_++] = bytes[i + k];
                }
                i += take;
                mqtt_remaining_ -= static_cast<std::uint32_t>(take);
                if (mqtt_remaining_ == 0 && !on_mqtt_packet()) return false;
                break;
            }
        }
    }
    return true;
}

bool RawConnection::on_mqtt_packet() {
    mqtt_phase_ = MqttPhase::type;
    if (mqtt_type_ == kMqttConnack && state_ == State::handshake) {
        // Section 3.2: remaining length 2, session-present flags, return code.
        if (mqtt_length_ != 2) {
            fail_connect("malformed CONNACK from " + engine_->endpoint().to_string() + " (remaining length " +
                         std::to_string(mqtt_length_) + ", expected 2)");
            return false;
        }
        const std::uint8_t code = mqtt_body_[1];
        if (code != 0) {
            fail_connect("MQTT server " + engine_->endpoint().to_string() + " refused CONNECT: CONNACK return code " +
                         std::to_string(code) + " (" + connack_text(code) + ")");
            return false;
        }
        opened();
        return state_ == State::open;
    }
    if (mqtt_type_ == kMqttPingresp && state_ == State::open) engine_->on_round_trips(1, last_send_);
    // Anything else (a PUBLISH, a stray CONNACK, a PINGRESP before CONNACK) has been skipped by its length.
    return true;
}

void RawConnection::close_fd() {
    if (fd_ < 0) return;
    engine_->loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
}

void RawConnection::fail_connect(const std::string& message) {
    assert(state_ == State::connecting || state_ == State::handshake);
    engine_->loop().cancel(*this);
    close_fd();
    state_ = State::done;
    engine_->on_connect_failure(message);
    engine_->on_finished();
}

void RawConnection::server_gone(int err) {
    if (state_ == State::handshake) {
        fail_connect(
            err == 0 ? "server " + engine_->endpoint().to_string() + " closed the connection before CONNACK"
                     : system_error("connection to " + engine_->endpoint().to_string() + " failed before CONNACK", err)
                           .message);
        return;
    }
    assert(state_ == State::open);
    // Read first: with a few thousand closes in one turn, the turn's start would flatter the later ones.
    const Instant seen = engine_->loop().precise_now();
    engine_->loop().cancel(*this);
    close_fd();
    state_ = State::done;
    engine_->on_server_close(*this, seen);
    engine_->on_finished();
}

void RawConnection::fail_protocol(const std::string& message) {
    if (state_ == State::handshake) {
        fail_connect(message + " from " + engine_->endpoint().to_string());
        return;
    }
    // Framing is lost: we can no longer tell PINGRESPs apart, so the
    // connection is useless for measuring. Not the server closing it, so
    // neither a detection nor a false close.
    engine_->loop().cancel(*this);
    close_fd();
    state_ = State::done;
    engine_->on_protocol_error();
    engine_->on_finished();
}

bool RawConnection::silence(Instant at) {
    if (state_ != State::open || silent_) return false;
    silent_ = true;
    silenced_at_ = at;
    // Nothing to send from now on: no timer at all. The socket stays in epoll, readable.
    engine_->loop().cancel(*this);
    return true;
}

void RawConnection::release() {
    if (engine_ != nullptr) engine_->loop().cancel(*this);
    close_fd();
    state_ = State::done;
}

// ---- RawEngine ----

RawEngine::RawEngine(const LoadOptions& options, net::Endpoint endpoint, std::vector<net::Endpoint> sources,
                     std::unique_ptr<EventLoop> loop, std::uint16_t keep_alive_s)
    : options_(options),
      endpoint_(endpoint),
      sources_(std::move(sources)),
      loop_(std::move(loop)),
      connections_(new RawConnection[static_cast<std::size_t>(options.connections)]),
      count_(static_cast<std::uint32_t>(options.connections)),
      keep_alive_s_(keep_alive_s) {
    for (std::uint32_t i = 0; i < count_; ++i) connections_[i].attach(*this, i);
}

RawEngine::~RawEngine() {
    for (std::uint32_t i = 0; i < count_; ++i) connections_[i].release();
}

Result<std::unique_ptr<LoadEngine>> RawEngine::create(const LoadOptions& options) {
    if (options.protocol != Protocol::echo && options.protocol != Protocol::mqtt)
        return Error{"the raw load engine speaks echo and mqtt only"};
    if (options.connections < 1 || options.connections > kMaxConnections)
        return Error{"connections per engine must be 1.." + std::to_string(kMaxConnections) + " (got " +
                     std::to_string(options.connections) + ")"};
    if (options.heartbeat <= Duration::zero()) return Error{"--heartbeat must be > 0"};
    if (!(options.ramp_per_second >= 0) || !std::isfinite(options.ramp_per_second))
        return Error{"ramp must be a finite number >= 0 connections per second"};
    // MQTT 3.1.1 section 3.1.2.10: keep alive is a 16-bit count of seconds.
    // Rounded up, so the server never expects PINGREQs faster than we send them.
    const std::int64_t keep_alive = std::max<std::int64_t>(1, (options.heartbeat.ns() + 999'999'999) / 1'000'000'000);
    if (options.protocol == Protocol::mqtt && keep_alive > 65535)
        return Error{"--heartbeat must be at most 65535 s for MQTT (keep-alive is 16 bits of seconds)"};
    Result<net::Endpoint> endpoint = net::parse_endpoint(options.server);
    if (!endpoint) return endpoint.error();
    std::vector<net::Endpoint> sources;
    for (const std::string& source : options.sources) {
        Result<net::Endpoint> e = net::parse_endpoint(source.find(':') == std::string::npos ? source + ":0" : source);
        if (!e) return e.error().with_context("source address");
        sources.push_back(*e);
    }
    runtime::EventLoopConfig loop_config;
    if (options.arrivals == Arrivals::uniform) loop_config.tick = kUniformTick;  // Each ping at its own instant.
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(loop_config);
    if (!loop) return loop.error();
    const auto keep_alive_s = static_cast<std::uint16_t>(std::min<std::int64_t>(keep_alive, 65535));
    return std::unique_ptr<LoadEngine>(
        new RawEngine(options, *endpoint, std::move(sources), std::move(*loop), keep_alive_s));
}

void RawEngine::run() {
    assert(!ran_ && "run() once per engine");
    ran_ = true;
    const Instant start = loop_->precise_now();
    std::uint64_t rng_state = options_.seed;
    for (std::uint32_t i = 0; i < count_; ++i) {
        // Clamped before the conversion: a ramp of 1e-12/s must not overflow the cast.
        const double delay_ns =
            options_.ramp_per_second > 0 ? std::min(1e9 * double(i) / options_.ramp_per_second, 1e18) : 0.0;
        // The first echo leaves at open, so the start's phase is the heartbeats' phase.
        const Duration jitter = start_jitter(options_.arrivals, options_.heartbeat, rng_state);
        connections_[i].start_at(start + Duration::nanoseconds(static_cast<std::int64_t>(delay_ns)) + jitter);
    }
    loop_->run();
}

void RawEngine::stop() {
    loop_->post([this] {
        for (std::uint32_t i = 0; i < count_; ++i) connections_[i].release();
        {
            std::lock_guard lock(mutex_);
            stats_.open = 0;  // Every open connection was just closed by us, and reports nothing.
        }
        loop_->stop();
    });
}

void RawEngine::silence(double fraction) {
    // The instant of the call, not of the loop's next turn: that is what "silence" means to the caller.
    const Instant at = clock_.now();
    fraction = std::clamp(fraction, 0.0, 1.0);
    loop_->post([this, at, fraction] {
        std::uint64_t silenced = 0;
        for (std::uint32_t i = 0; i < count_; ++i) {
            if (is_silenced(i, fraction) && connections_[i].silence(at)) ++silenced;
        }
        std::lock_guard lock(mutex_);
        stats_.silenced += silenced;
    });
}

LoadStats RawEngine::stats() const {
    std::lock_guard lock(mutex_);
    LoadStats s = stats_;
    s.round_trips = round_trips_.load(std::memory_order_relaxed);
    return s;
}

void RawEngine::on_round_trips(std::uint64_t n, Instant sent) {
    const std::int64_t rtt_ns = (loop_->now() - sent).ns();
    std::lock_guard lock(mutex_);
    // Counted under the lock, so a stats() snapshot has as many samples as round trips.
    round_trips_.fetch_add(n, std::memory_order_relaxed);
    for (std::uint64_t k = 0; k < n; ++k) stats_.round_trip_latency.record_ns(rtt_ns);
}

void RawEngine::on_opened() {
    std::lock_guard lock(mutex_);
    ++stats_.connected;
    ++stats_.open;
}

void RawEngine::on_connect_failure(const std::string& message) {
    std::lock_guard lock(mutex_);
    ++stats_.connect_failures;
    if (stats_.first_error.empty()) stats_.first_error = message;
}

void RawEngine::on_server_close(const RawConnection& connection, Instant seen) {
    std::lock_guard lock(mutex_);
    assert(stats_.open > 0);
    --stats_.open;
    if (!connection.silent()) {
        ++stats_.false_closes;
        return;
    }
    stats_.detect_after_silence_ns.push_back((seen - connection.silenced_at()).ns());
    stats_.detect_after_last_send_ns.push_back((seen - connection.last_send()).ns());
}

void RawEngine::on_protocol_error() {
    std::lock_guard lock(mutex_);
    assert(stats_.open > 0);
    --stats_.open;
}

void RawEngine::on_finished() {
    // Like the framed engine (lifeline::Client without reconnect): when every
    // connection has ended there is nothing left to drive, and run() returns.
    if (++finished_ == count_) loop_->stop();
}

}  // namespace

Result<std::unique_ptr<LoadEngine>> make_raw_engine(const LoadOptions& options) { return RawEngine::create(options); }

}  // namespace lifeline::loadgen
