// One connection of the lean load engine: connect, ping on its timer, read
// echoes or MQTT packets, and end exactly once (see raw_engine.hpp).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen/raw_engine.hpp"

namespace lifeline::loadgen::raw {

namespace {

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

}  // namespace

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

}  // namespace lifeline::loadgen::raw
