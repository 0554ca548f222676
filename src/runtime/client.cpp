// The client: one event loop, N connections, each with its own liveness
// machine (framed) and (with reconnect) its own backoff. Raw connections are
// plain TCP: no handshake, no heartbeats, no timer once connected.
#include "lifeline/client.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <random>

#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/failure_detector.hpp"
#include "lifeline/engine/liveness.hpp"
#include "net/endpoint.hpp"
#include "net/socket_options.hpp"
#include "net/tcp_info.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/stream_socket.hpp"

namespace lifeline {

using runtime::EventLoop;
using runtime::LoopObject;
using runtime::StreamSocket;

Result<void> ClientOptions::validate() const {
    if (count < 1 || count > 20'000) return Error{"--count must be 1..20000 (got " + std::to_string(count) + ")"};
    // Raw connections send no HELLO and run no heartbeat: these two are unused there.
    if (mode == ClientMode::framed) {
        if (heartbeat <= Duration::zero()) return Error{"--heartbeat must be > 0"};
        if (timeout <= heartbeat)
            return Error{"--timeout (" + to_string(timeout) + ") must be longer than --heartbeat (" +
                         to_string(heartbeat) + ")"};
        if (heartbeat.ms() > UINT32_MAX || timeout.ms() > UINT32_MAX)
            return Error{"heartbeat and timeout must fit in 32-bit ms"};
    }
    if (backoff_initial <= Duration::zero() || backoff_max < backoff_initial)
        return Error{"backoff: need 0 < initial <= max"};
    if (ramp_per_second < 0) return Error{"ramp must be >= 0 connections per second"};
    if (connect_timeout <= Duration::zero()) return Error{"connect timeout must be > 0"};
    if (id.size() > kMaxIdSize || !is_valid_utf8(id)) return Error{"--id must be valid UTF-8 of at most 255 bytes"};
    if (auto k = keepalive.validate(); !k) return Error{"--keepalive: " + k.error().message};
    return {};
}

namespace {

constexpr std::size_t kScratchSize = 64 * 1024;
constexpr int kMaxReadsPerEvent = 16;

enum class State : std::uint8_t { waiting, connecting, handshake, open, finished };

class ClientConnection;

}  // namespace

struct Client::Impl {
    ClientOptions options;
    ClientCallbacks callbacks;
    net::Endpoint endpoint;
    std::vector<net::Endpoint> sources;
    std::unique_ptr<EventLoop> loop;
    std::vector<std::unique_ptr<ClientConnection>> conns;
    std::mt19937_64 rng;
    std::vector<std::uint8_t> scratch = std::vector<std::uint8_t>(kScratchSize);
    std::vector<std::uint8_t> encode;
    std::uint64_t next_conn_number = 1;
    int finished = 0;
    bool stopping = false;
    bool reading_stopped = false;  // stop_reading() was called (sticky). Loop thread only.

    void emit(const Event& e) const {
        if (callbacks.on_event) callbacks.on_event(e);
    }
    void connection_finished() {
        if (++finished == static_cast<int>(conns.size())) loop->stop();
    }
};

namespace {

class ClientConnection final : public LoopObject {
public:
    // A raw connection never convicts and never pings: its liveness machine
    // only remembers when the last byte arrived (for the kernel's dead events).
    ClientConnection(Client::Impl& client, int index)
        : client_(client),
          index_(index),
          detector_(client.options.mode == ClientMode::raw ? Duration::infinite() : client.options.timeout,
                    client.loop->now()),
          liveness_(LivenessConfig{client.options.heartbeat, client.options.mode == ClientMode::framed}, detector_,
                    client.loop->now()),
          id_(client.options.count > 1 && !client.options.id.empty() ? client.options.id + "-" + std::to_string(index)
                                                                     : client.options.id) {}
    ~ClientConnection() override { client_.loop->cancel(*this); }

    void start();
    void on_io(std::uint32_t events) override;
    void on_timer() override;
    void send_data(std::span<const std::uint8_t> payload) {
        if (state_ != State::open) return;
        data_out_ += payload.size();
        if (raw()) {
            transmit(payload, false);
        } else {
            send_frame(Data{payload}, false);
        }
    }
    void stop();
    // Client::stop_reading() reached this connection (reading_stopped is already set).
    void stop_reading();
    void silence();
    // The first connect, `delay` from now (the ramp).
    void start_after(Duration delay) {
        if (delay <= Duration::zero()) return start();
        client_.loop->schedule(*this, client_.loop->now() + delay);
    }
    void forgive_stall(Instant now) {
        if (state_ != State::open || raw()) return;
        liveness_.on_local_stall(now);
        rearm();
    }

private:
    bool raw() const { return client_.options.mode == ClientMode::raw; }
    void on_connected();
    void read_available();
    void handle_frame(const Frame& frame);
    void send_frame(const Frame& frame, bool control);
    // Writes (or queues) bytes already encoded (framed) or plain (raw).
    void transmit(std::span<const std::uint8_t> bytes, bool control);
    void flush();
    // With reading stopped: takes EPOLLIN back out of the socket's interest.
    void apply_read_interest();
    void rearm();
    void fail_socket(int err);
    // Ends this connection or attempt; reconnects after a backoff if asked to.
    void down(DisconnectReason reason, const std::string& message);
    Event event(EventKind kind) const;

    Client::Impl& client_;
    int index_;
    FixedTimeoutDetector detector_;
    LivenessMachine liveness_;
    std::optional<FrameDecoder> decoder_;
    std::optional<StreamSocket> socket_;
    std::string id_;
    std::string granted_id_;
    std::string peer_;
    Instant connected_at_;
    std::uint64_t number_ = 0;  // Event "conn" number of the current attempt.
    // Application bytes of the current attempt (DATA payloads; raw: every byte).
    std::uint64_t data_in_ = 0;
    std::uint64_t data_out_ = 0;
    int attempt_ = 0;
    State state_ = State::waiting;
    bool draining_ = false;
    bool silent_ = false;  // silence(): sends nothing, judges nothing, still reads.
};

Event ClientConnection::event(EventKind kind) const {
    Event e;
    e.kind = kind;
    e.conn = number_;
    e.peer = peer_;
    e.client_id = granted_id_.empty() ? id_ : granted_id_;
    return e;
}

void ClientConnection::start() {
    number_ = client_.next_conn_number++;
    data_in_ = data_out_ = 0;
    silent_ = false;
    peer_ = client_.endpoint.to_string();
    Result<int> fd =
        client_.sources.empty()
            ? net::start_connect(client_.endpoint)
            : net::start_connect(client_.endpoint,
                                 client_.sources[static_cast<std::size_t>(index_) % client_.sources.size()]);
    if (!fd) {
        down(DisconnectReason::unreachable, fd.error().message);
        return;
    }
    socket_.emplace(*fd, /*framed=*/!raw());
    if (!raw()) decoder_.emplace(DecoderRole::client, DecoderLimits{client_.options.max_body_size});
    state_ = State::connecting;
    if (auto w = socket_->watch(*client_.loop, *this, /*writable=*/true); !w) {
        down(DisconnectReason::local_close, w.error().message);
        return;
    }
    apply_read_interest();  // A hung reader's new connections do not read either.
    if (state_ != State::connecting) return;
    client_.loop->schedule(*this, client_.loop->now() + client_.options.connect_timeout);
}

void ClientConnection::on_connected() {
    const Instant now = client_.loop->now();
    if (auto k = net::apply_keepalive(socket_->fd(), client_.options.keepalive); !k) {
        down(DisconnectReason::local_close, k.error().message);
        return;
    }
    [[maybe_unused]] auto nd = net::set_nodelay(socket_->fd());
    connected_at_ = now;
    if (raw()) {
        // Nothing to negotiate: open now, and no timer at all from here on
        // (connect_timeout covered the TCP connect only). Only the kernel's
        // keepalive and user timeout judge the server.
        client_.loop->cancel(*this);
        detector_ = FixedTimeoutDetector(Duration::infinite(), now);
        state_ = State::open;
        attempt_ = 0;
        client_.emit(event(EventKind::connect));
        if (client_.callbacks.on_connect) client_.callbacks.on_connect(index_);
        return;
    }
    state_ = State::handshake;
    client_.emit(event(EventKind::connect));
    send_frame(Hello{kProtocolVersion, static_cast<std::uint32_t>(client_.options.heartbeat.ms()),
                     static_cast<std::uint32_t>(client_.options.timeout.ms()), id_},
               true);
    // The connect deadline still runs: WELCOME must come within it.
}

void ClientConnection::on_io(std::uint32_t events) {
    if (!socket_ || !socket_->open()) return;
    if (state_ == State::connecting) {
        const int err = net::connect_result(socket_->fd());
        if (err != 0) {
            fail_socket(err);
            return;
        }
        socket_->connected(*client_.loop, *this);
        apply_read_interest();
        if (state_ != State::connecting) return;
        on_connected();
        return;
    }
    if (events & EPOLLERR) {
        fail_socket(net::connect_result(socket_->fd()));
        return;
    }
    if (client_.reading_stopped) {
        // EPOLLHUP is reported whatever the interest, and level-triggered: a
        // reader that will not read cannot wait for the EOF, so the connection
        // ends here rather than waking the loop every turn.
        if (events & EPOLLHUP) {
            const int err = net::connect_result(socket_->fd());
            if (err != 0) {
                fail_socket(err);
            } else {
                down(DisconnectReason::peer_closed, "connection hung up (while not reading)");
            }
            return;
        }
    } else if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        read_available();
    }
    if (socket_ && socket_->open() && (events & EPOLLOUT)) flush();
}

void ClientConnection::read_available() {
    for (int i = 0; i < kMaxReadsPerEvent && socket_ && socket_->open(); ++i) {
        const StreamSocket::ReadResult r = socket_->read(client_.scratch);
        switch (r.status) {
            case StreamSocket::ReadStatus::data: {
                if (state_ == State::open) liveness_.on_bytes_received(client_.loop->now());
                std::span<const std::uint8_t> input(client_.scratch.data(), r.bytes);
                if (raw()) {
                    // Counted and handed over; nothing to decode.
                    data_in_ += r.bytes;
                    if (client_.callbacks.on_message) client_.callbacks.on_message(index_, input);
                    if (r.bytes < client_.scratch.size()) return;
                    break;
                }
                while (socket_ && socket_->open()) {
                    FrameDecoder::Step step = decoder_->next(input);
                    if (step.error) {
                        down(DisconnectReason::protocol_error,
                             std::string(to_string(step.error->kind)) + ": " + step.error->detail);
                        return;
                    }
                    if (!step.frame) break;
                    handle_frame(*step.frame);
                }
                if (r.bytes < client_.scratch.size()) return;
                break;
            }
            case StreamSocket::ReadStatus::would_block:
                return;
            case StreamSocket::ReadStatus::eof:
                // While draining after ECONNRESET, end of stream is only the
                // reset socket (its error already taken): the RST decides.
                if (draining_) return;
                down(DisconnectReason::peer_closed, "server closed the connection");
                return;
            case StreamSocket::ReadStatus::error:
                fail_socket(r.error);
                return;
        }
    }
}

void ClientConnection::handle_frame(const Frame& frame) {
    const Instant now = client_.loop->now();
    if (const auto* welcome = std::get_if<Welcome>(&frame)) {
        const Duration interval = Duration::milliseconds(welcome->interval_ms);
        const Duration granted_timeout = Duration::milliseconds(welcome->timeout_ms);
        if (interval <= Duration::zero() || granted_timeout <= interval) {
            down(DisconnectReason::protocol_error, "WELCOME granted an unusable interval/timeout");
            return;
        }
        // The server clamps the timeout to protect itself, and judges us by what
        // it granted; how long we wait for the server is our own business, so a
        // longer request stands (docs/PROTOCOL.md, WELCOME). The interval is the
        // server's to grant: pinging faster than it allows is abuse.
        const Duration timeout = std::max(client_.options.timeout, granted_timeout);
        detector_ = FixedTimeoutDetector(timeout, now);
        liveness_ = LivenessMachine(LivenessConfig{interval, true}, detector_, now);
        granted_id_ = welcome->id;
        state_ = State::open;
        attempt_ = 0;
        Event e = event(EventKind::hello);
        e.interval = interval;
        e.timeout = timeout;
        client_.emit(e);
        if (client_.callbacks.on_connect) client_.callbacks.on_connect(index_);
        rearm();
    } else if (const auto* pong = std::get_if<Pong>(&frame)) {
        if (auto rtt = liveness_.on_pong(now, *pong)) {
            Event e = event(EventKind::rtt);
            e.rtt = *rtt;
            client_.emit(e);
            if (client_.callbacks.on_rtt) client_.callbacks.on_rtt(index_, *rtt);
        }
    } else if (const auto* ping = std::get_if<Ping>(&frame)) {
        send_frame(Pong{ping->seq, ping->sent_at}, true);
    } else if (const auto* data = std::get_if<Data>(&frame)) {
        data_in_ += data->payload.size();
        if (client_.callbacks.on_message) client_.callbacks.on_message(index_, data->payload);
    } else if (const auto* close = std::get_if<Close>(&frame)) {
        DisconnectReason reason = DisconnectReason::peer_closed;
        if (close->code == static_cast<std::uint16_t>(CloseCode::session_replaced))
            reason = DisconnectReason::session_replaced;
        if (close->code == static_cast<std::uint16_t>(CloseCode::protocol_error) ||
            close->code == static_cast<std::uint16_t>(CloseCode::too_many_pings))
            reason = DisconnectReason::protocol_error;
        down(reason, "server sent CLOSE " + std::to_string(close->code) + ": " + close->reason);
    }
}

void ClientConnection::send_frame(const Frame& frame, bool control) {
    if (!socket_ || !socket_->open() || silent_) return;
    std::vector<std::uint8_t>& buf = client_.encode;
    buf.clear();
    if (auto r = append_frame(buf, frame, client_.options.max_body_size); !r) {
        Event e = event(EventKind::error);
        e.message = r.error().message;
        client_.emit(e);
        return;
    }
    transmit(buf, control);
}

void ClientConnection::transmit(std::span<const std::uint8_t> bytes, bool control) {
    if (!socket_ || !socket_->open()) return;
    const StreamSocket::SendResult r = socket_->send(*client_.loop, *this, bytes, control);
    if (r.error != 0) {
        fail_socket(r.error);
        return;
    }
    // The instant the bytes left, not the turn's start: a turn that sends
    // thousands of PINGs would otherwise date the last ones milliseconds early
    // (and on_silenced reports this instant to `lifeline bench`).
    if (r.written_now > 0) liveness_.on_bytes_sent(client_.loop->precise_now());
    if (socket_->queued_bytes() > client_.options.output_budget) {
        down(DisconnectReason::slow_consumer, "server is not reading: output budget exceeded");
        return;
    }
    apply_read_interest();
}

void ClientConnection::flush() {
    const auto r = socket_->flush(*client_.loop, *this);
    if (r.written > 0) liveness_.on_bytes_sent(client_.loop->precise_now());
    if (r.error != 0) {
        fail_socket(r.error);
        return;
    }
    apply_read_interest();
}

void ClientConnection::apply_read_interest() {
    if (!client_.reading_stopped || !socket_ || !socket_->open()) return;
    // StreamSocket (shared with the server, which never stops reading) puts
    // EPOLLIN | EPOLLRDHUP back whenever it toggles EPOLLOUT, so this runs
    // after every call that may toggle it; only a stopped reader pays for the
    // extra epoll_ctl. EPOLLOUT stays exactly as StreamSocket wants it: while
    // connecting, and while something is queued. EPOLLERR and EPOLLHUP are
    // reported regardless; on_io() ends the connection on them.
    const bool writable = state_ == State::connecting || socket_->queued_bytes() > 0;
    if (auto m = client_.loop->modify(socket_->fd(), writable ? std::uint32_t{EPOLLOUT} : 0u, this); !m) {
        down(DisconnectReason::local_close, m.error().message);
    }
}

void ClientConnection::stop_reading() {
    if (!socket_ || !socket_->open()) return;  // Between attempts: start() applies it to the next one.
    apply_read_interest();
    if (state_ == State::open && !raw()) {
        // A hung reader cannot notice silence: it keeps pinging on schedule
        // but never convicts. The last arrival stays, for the kernel's verdicts.
        detector_ = FixedTimeoutDetector(Duration::infinite(), detector_.last_arrival());
        rearm();
    }
}

void ClientConnection::silence() {
    if (silent_ || state_ != State::open) return;
    silent_ = true;
    // No timer from now on: nothing to send, nobody to judge.
    client_.loop->cancel(*this);
    if (client_.callbacks.on_silenced)
        client_.callbacks.on_silenced(index_, client_.loop->now(), liveness_.last_sent());
}

void ClientConnection::rearm() {
    if (silent_) return;
    client_.loop->schedule(*this, liveness_.next_deadline());
}

void ClientConnection::on_timer() {
    const Instant now = client_.loop->now();
    switch (state_) {
        case State::waiting:
            start();
            return;
        case State::connecting:
        case State::handshake:
            down(DisconnectReason::unreachable, std::string(raw() ? "TCP connect did not complete" : "no WELCOME") +
                                                    " within " + to_string(client_.options.connect_timeout));
            return;
        case State::finished:
            return;
        case State::open:
            if (raw()) return;  // Never scheduled: a raw connection has no timer once open.
            break;
    }
    const LivenessStep step = liveness_.on_timer(now);
    if (step.action == LivenessAction::declare_dead) {
        Event e = event(EventKind::dead);
        e.reason = DisconnectReason::heartbeat_timeout;
        e.silence = now - liveness_.last_received();
        e.budget = detector_.timeout();
        e.rtt = liveness_.rtt().smoothed();
        client_.emit(e);
        send_frame(Close{static_cast<std::uint16_t>(CloseCode::heartbeat_timeout), "server silent"}, true);
        // Sending the CLOSE may itself have ended the connection (a send error).
        if (state_ == State::open)
            down(DisconnectReason::heartbeat_timeout, "nothing received for " + to_string(e.silence));
        return;
    }
    if (step.action == LivenessAction::send_ping) send_frame(step.ping, true);
    if (state_ == State::open) rearm();
}

void ClientConnection::fail_socket(int err) {
    // A failed send may only be the echo of a close that is already waiting in
    // our receive buffer (the server's CLOSE and FIN): read that first, so the
    // connection ends with the server's reason rather than "broken pipe".
    // A stopped reader does not read even now: it would not have seen the close.
    if (!draining_ && !client_.reading_stopped && socket_ && socket_->open() && (err == EPIPE || err == ECONNRESET)) {
        draining_ = true;
        read_available();
        draining_ = false;
        if (!socket_ || !socket_->open() || state_ == State::waiting || state_ == State::finished) return;
    }
    Result<net::TcpInfo> info = socket_ ? net::read_tcp_info(socket_->fd()) : Result<net::TcpInfo>(Error{"closed"});
    const DisconnectReason reason =
        net::classify_socket_error(err, info ? &*info : nullptr, socket_ && socket_->queued_bytes() > 0);
    if (state_ == State::open &&
        (reason == DisconnectReason::keepalive_timeout || reason == DisconnectReason::user_timeout)) {
        Event e = event(EventKind::dead);
        e.reason = reason;
        e.silence = client_.loop->now() - liveness_.last_received();
        e.budget = reason == DisconnectReason::user_timeout ? client_.options.keepalive.user_timeout_value()
                                                            : client_.options.keepalive.budget();
        client_.emit(e);
    }
    down(reason, err != 0 ? std::strerror(err) : "socket error");
}

void ClientConnection::down(DisconnectReason reason, const std::string& message) {
    const bool was_connected = state_ == State::handshake || state_ == State::open;
    const bool was_open = state_ == State::open;
    client_.loop->cancel(*this);
    if (was_connected) {
        Event e = event(EventKind::closed);
        e.reason = reason;
        e.duration = client_.loop->now() - connected_at_;
        e.bytes_in = socket_ ? socket_->bytes_in() : 0;
        e.bytes_out = socket_ ? socket_->bytes_out() : 0;
        e.bytes_unsent = socket_ ? socket_->queued_bytes() : 0;
        e.data_in = data_in_;
        e.data_out = data_out_;
        e.message = message;
        client_.emit(e);
    } else if (state_ != State::finished) {
        Event e = event(EventKind::error);
        e.reason = reason;
        e.message = "connect to " + client_.endpoint.to_string() + " failed: " + message;
        client_.emit(e);
    }
    socket_.reset();
    decoder_.reset();
    granted_id_.clear();
    if (was_open && client_.callbacks.on_down) client_.callbacks.on_down(index_, reason);
    if (!was_open && state_ != State::finished && client_.callbacks.on_connect_failed)
        client_.callbacks.on_connect_failed(index_, reason, message);
    if (client_.options.reconnect && !client_.stopping) {
        // Exponential backoff with full jitter (Brooker, "Exponential Backoff
        // and Jitter", AWS Architecture Blog 2015): a fleet that lost its
        // server at once does not come back at once.
        const int shift = std::min(attempt_, 30);
        const Duration cap =
            std::min(client_.options.backoff_max, client_.options.backoff_initial * (std::int64_t{1} << shift));
        const Duration delay =
            Duration::nanoseconds(std::uniform_int_distribution<std::int64_t>(0, cap.ns())(client_.rng));
        ++attempt_;
        state_ = State::waiting;
        Event e = event(EventKind::error);
        e.message = "reconnecting in " + to_string(delay) + " (attempt " + std::to_string(attempt_) + ")";
        client_.emit(e);
        client_.loop->schedule(*this, client_.loop->now() + delay);
        return;
    }
    if (state_ != State::finished) {
        state_ = State::finished;
        client_.connection_finished();
    }
}

void ClientConnection::stop() {
    if (state_ == State::open && !raw()) {
        send_frame(Close{static_cast<std::uint16_t>(CloseCode::normal), "client stopping"}, true);
    }
    if (state_ == State::waiting) {
        // Between attempts there is no connection to report on.
        client_.loop->cancel(*this);
        state_ = State::finished;
        client_.connection_finished();
        return;
    }
    if (state_ != State::finished) down(DisconnectReason::shutdown, "client stopping");
}

}  // namespace

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::create(const ClientOptions& options, ClientCallbacks callbacks) {
    if (auto v = options.validate(); !v) return v.error();
    Result<net::Endpoint> endpoint = net::parse_endpoint(options.server);
    if (!endpoint) return endpoint.error();
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    impl->callbacks = std::move(callbacks);
    impl->endpoint = *endpoint;
    for (const std::string& source : options.source_addresses) {
        Result<net::Endpoint> e = net::parse_endpoint(source.find(':') == std::string::npos ? source + ":0" : source);
        if (!e) return e.error().with_context("source address");
        impl->sources.push_back(*e);
    }
    impl->rng.seed(options.seed != 0 ? options.seed : std::random_device{}());
    runtime::EventLoopConfig loop_config;
    loop_config.tick = options.tick;
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(loop_config);
    if (!loop) return loop.error();
    impl->loop = std::move(*loop);
    Impl* raw = impl.get();
    impl->loop->set_stall_callback([raw](Duration lag) {
        // Our own stop (SIGSTOP, suspend, a long callback) is not the server's silence.
        for (auto& c : raw->conns) c->forgive_stall(raw->loop->now());
        Event e;
        e.kind = EventKind::stall;
        e.silence = lag;
        e.message =
            "event loop woke " + to_string(lag) + " late; silence during the stall is not held against the server";
        raw->emit(e);
    });
    for (int i = 0; i < options.count; ++i) impl->conns.push_back(std::make_unique<ClientConnection>(*impl, i));
    return std::unique_ptr<Client>(new Client(std::move(impl)));
}

void Client::run() {
    const double ramp = impl_->options.ramp_per_second;
    for (std::size_t i = 0; i < impl_->conns.size(); ++i) {
        impl_->conns[i]->start_after(ramp > 0 ? Duration::nanoseconds(static_cast<std::int64_t>(1e9 * double(i) / ramp))
                                              : Duration::zero());
    }
    if (impl_->finished < static_cast<int>(impl_->conns.size())) impl_->loop->run();
}

void Client::stop() {
    Impl* impl = impl_.get();
    impl->loop->post([impl] {
        impl->stopping = true;
        for (auto& c : impl->conns) c->stop();
        impl->loop->stop();
    });
}

void Client::stop_reading() {
    Impl* impl = impl_.get();
    impl->loop->post([impl] {
        if (impl->reading_stopped) return;
        impl->reading_stopped = true;
        for (auto& c : impl->conns) c->stop_reading();
    });
}

void Client::silence(int connection) {
    Impl* impl = impl_.get();
    if (connection < 0 || connection >= static_cast<int>(impl->conns.size())) return;
    impl->loop->post([impl, connection] { impl->conns[static_cast<std::size_t>(connection)]->silence(); });
}

void Client::send(int connection, std::span<const std::uint8_t> payload) {
    Impl* impl = impl_.get();
    if (connection < 0 || connection >= static_cast<int>(impl->conns.size())) return;
    std::vector<std::uint8_t> copy(payload.begin(), payload.end());
    impl->loop->post([impl, connection, copy = std::move(copy)] {
        impl->conns[static_cast<std::size_t>(connection)]->send_data(copy);
    });
}

}  // namespace lifeline
