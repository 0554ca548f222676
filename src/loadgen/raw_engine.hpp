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
//
// Internal to src/loadgen: RawConnection (raw_connection.cpp) and RawEngine
// (raw_engine.cpp), split by responsibility.
#pragma once

#include <sys/epoll.h>

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

namespace lifeline::loadgen::raw {

using runtime::EventLoop;
using runtime::LoopObject;

inline constexpr int kMaxConnections = 1'000'000;  // Per engine; a process's descriptor limit binds long before.
inline constexpr Duration kConnectTimeout = Duration::seconds(5);  // TCP connect, plus CONNACK for MQTT.
inline constexpr std::size_t kScratchSize = 4096;  // Shared by all connections of the loop: reads are consumed at once.
inline constexpr int kMaxReadsPerEvent = 4;        // Level-triggered: whatever is left wakes us next turn.
inline constexpr std::size_t kEchoSize = 8;
inline constexpr std::size_t kMaxConnectSize = 64;  // CONNECT with the longest "ll-<u64>-<u32>" client id is 48 bytes.

// MQTT 3.1.1 (OASIS Standard, 29 October 2014), section 2.2.1: control packet types.
inline constexpr std::uint8_t kMqttConnack = 2;
inline constexpr std::uint8_t kMqttPingresp = 13;
inline constexpr std::array<std::uint8_t, 2> kPingreq = {0xC0, 0x00};  // Section 3.12.

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

}  // namespace lifeline::loadgen::raw
