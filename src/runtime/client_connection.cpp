#include "runtime/client_connection.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lifeline/sys/socket_options.hpp"
#include "lifeline/sys/tcp_info.hpp"

namespace lifeline::runtime {

namespace {

constexpr int kMaxReadsPerEvent = 16;

}  // namespace

ClientSessionConfig session_config(const ClientOptions& o, int index) {
    ClientSessionConfig c;
    c.framed = o.mode != ClientMode::raw;
    c.websocket = o.mode == ClientMode::websocket;
    c.heartbeat = c.framed ? o.heartbeat : Duration::zero();  // Raw: unused.
    c.timeout = c.framed ? o.timeout : Duration::zero();
    c.id = o.count > 1 && !o.id.empty() ? o.id + "-" + std::to_string(index) : o.id;
    c.credential = o.credential;
    c.handshake_timeout = o.connect_timeout;
    c.max_body_size = o.max_body_size;
    c.websocket_path = o.websocket_path;
    c.websocket_host = o.websocket_host.empty() ? o.server : o.websocket_host;
    return c;
}

ClientConnection::ClientConnection(Client::Impl& client, int index)
    : client_(client), index_(index), config_(session_config(client.options, index)) {}

Event ClientConnection::event(EventKind kind) const {
    Event e;
    e.kind = kind;
    e.conn = number_;
    e.peer = peer_;
    e.client_id = session_ && !session_->granted_id().empty() ? session_->granted_id() : config_.id;
    return e;
}

void ClientConnection::start_after(Duration delay) {
    if (delay <= Duration::zero()) return start();
    client_.loop->schedule(*this, client_.loop->now() + delay);
}

void ClientConnection::start() {
    number_ = client_.next_conn_number++;
    data_in_ = data_out_ = 0;
    silent_ = false;
    peer_ = client_.endpoint.to_string();
    started_at_ = client_.loop->now();
    Result<int> fd =
        client_.sources.empty()
            ? net::start_connect(client_.endpoint)
            : net::start_connect(client_.endpoint,
                                 client_.sources[static_cast<std::size_t>(index_) % client_.sources.size()]);
    if (!fd) {
        down(DisconnectReason::unreachable, fd.error().message);
        return;
    }
    // The queue parses lifeline frames only when it sees them in the clear.
    socket_.emplace(*fd, /*framed=*/client_.options.mode == ClientMode::framed && !client_.tls);
    state_ = State::connecting;
    if (auto w = socket_->watch(*client_.loop, *this, /*writable=*/true); !w) {
        down(DisconnectReason::local_close, w.error().message);
        return;
    }
    apply_read_interest();  // A hung reader's new connections do not read either.
    if (state_ != State::connecting) return;
    client_.loop->schedule(*this, started_at_ + client_.options.connect_timeout);
}

void ClientConnection::on_connected() {
    const Instant now = client_.loop->now();
    if (auto k = sys::apply_keepalive(socket_->fd(), client_.options.keepalive); !k) {
        down(DisconnectReason::local_close, k.error().message);
        return;
    }
    [[maybe_unused]] auto nd = net::set_nodelay(socket_->fd());
    connected_at_ = now;
    // connect_timeout covers the TCP connect and the WELCOME together.
    config_.handshake_timeout =
        std::max(Duration::milliseconds(1), started_at_ + client_.options.connect_timeout - now);
    config_.websocket_seed = client_.rng();  // Fresh masking keys for each attempt.
    if (client_.tls) {
        tls_ = std::make_unique<TlsStream>(*client_.tls, client_.tls_server_name);
        send_ciphertext(false);  // The ClientHello.
        if (!socket_open()) return;
    }
    session_.emplace(config_, now);
    state_ = State::handshake;
    client_.emit(event(EventKind::connect));
    drain();  // The HELLO (raw: opened at once); with TLS it waits inside for the handshake.
}

void ClientConnection::drain() {
    // Write each Transmit before anything else touches the session: its span
    // is valid only until then. A silenced connection sends nothing at all.
    bool more = true;
    while (more && session_) {
        more = false;
        while (session_) {
            std::optional<Transmit> t = session_->poll_transmit();
            if (!t) break;
            if (!silent_) transmit(t->bytes, t->control, session_->state() == ClientSession::State::closed);
        }
        while (session_) {
            std::optional<SessionEvent> e = session_->poll_event();
            if (!e) break;
            on_session_event(*e);
            more = true;
        }
    }
    if (session_ && (state_ == State::handshake || state_ == State::open)) rearm();
}

void ClientConnection::on_session_event(SessionEvent& e) {
    switch (e.kind) {
        case SessionEventKind::hello:  // Server sessions only.
            return;
        case SessionEventKind::opened:
            on_opened(e);
            return;
        case SessionEventKind::message:
            data_in_ += e.payload.size();
            if (client_.callbacks.on_message) client_.callbacks.on_message(index_, e.payload);
            return;
        case SessionEventKind::rtt: {
            Event r = event(EventKind::rtt);
            r.rtt = e.rtt;
            client_.emit(r);
            if (client_.callbacks.on_rtt) client_.callbacks.on_rtt(index_, e.rtt);
            return;
        }
        case SessionEventKind::dead:
            on_dead(e);
            return;
        case SessionEventKind::error: {
            Event err = event(EventKind::error);
            err.message = std::move(e.message);
            client_.emit(err);
            return;
        }
        case SessionEventKind::closed:
            down(e.reason, e.message);
            return;
    }
}

void ClientConnection::on_opened(const SessionEvent& e) {
    state_ = State::open;
    attempt_ = 0;
    if (!raw()) {
        Event hello = event(EventKind::hello);
        hello.interval = e.interval;
        hello.timeout = e.timeout;
        if (!config_.resume_token.empty()) hello.message = "resumed: presented the resume token from the last WELCOME";
        client_.emit(hello);
        // Kept for the next attempt: proof that a reconnect is us, so the
        // server replaces our stale connection instead of refusing the id.
        if (!config_.id.empty()) config_.resume_token = session_->resume_token();
    }
    if (client_.callbacks.on_connect) client_.callbacks.on_connect(index_);
}

void ClientConnection::on_dead(const SessionEvent& e) {
    Event dead = event(EventKind::dead);
    dead.reason = e.reason;
    dead.silence = e.silence;
    dead.budget = e.budget;
    dead.rtt = e.rtt;
    client_.emit(dead);
}

void ClientConnection::send_data(std::span<const std::uint8_t> payload) {
    if (state_ != State::open || !session_) return;
    if (auto r = session_->send(payload); !r) {
        Event e = event(EventKind::error);
        e.message = r.error().message;
        client_.emit(e);
        return;
    }
    data_out_ += payload.size();
    drain();
}

void ClientConnection::on_io(std::uint32_t events) {
    if (!socket_open()) return;
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
    if (socket_open() && (events & EPOLLOUT)) flush();
}

void ClientConnection::read_available() {
    for (int i = 0; i < kMaxReadsPerEvent && socket_open() && session_; ++i) {
        const StreamSocket::ReadResult r = socket_->read(client_.scratch);
        switch (r.status) {
            case StreamSocket::ReadStatus::data:
                if (tls_) {
                    if (!take_tls({client_.scratch.data(), r.bytes})) return;
                } else {
                    session_->receive({client_.scratch.data(), r.bytes}, client_.loop->now());
                }
                drain();
                if (r.bytes < client_.scratch.size()) return;
                break;
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

bool ClientConnection::take_tls(std::span<const std::uint8_t> ciphertext) {
    std::vector<std::uint8_t> plaintext;
    const Result<void> r = tls_->receive(ciphertext, plaintext);
    send_ciphertext(false);  // Handshake records, alerts.
    if (!socket_open() || !session_) return false;
    if (!r) {
        down(DisconnectReason::protocol_error, r.error().message);
        return false;
    }
    if (!plaintext.empty()) session_->receive(plaintext, client_.loop->now());
    return true;
}

void ClientConnection::send_ciphertext(bool best_effort) {
    const std::vector<std::uint8_t> out = tls_->take_ciphertext();
    if (!out.empty()) write_to_socket(out, false, best_effort);
}

void ClientConnection::transmit(std::span<const std::uint8_t> bytes, bool control, bool best_effort) {
    if (!socket_open()) return;
    if (tls_) {
        // Records are opaque to the queue: control bytes cannot jump ahead of them.
        if (Result<void> r = tls_->send(bytes); !r) {
            if (!best_effort) down(DisconnectReason::local_close, r.error().message);
            return;
        }
        send_ciphertext(best_effort);
        return;
    }
    write_to_socket(bytes, control, best_effort);
}

void ClientConnection::write_to_socket(std::span<const std::uint8_t> bytes, bool control, bool best_effort) {
    if (!socket_open()) return;
    const StreamSocket::SendResult r = socket_->send(*client_.loop, *this, bytes, control);
    if (r.error != 0) {
        // On the way out (a CLOSE after the verdict), a failed send changes nothing.
        if (!best_effort) fail_socket(r.error);
        return;
    }
    // The instant the bytes left, not the turn's start: a turn that sends
    // thousands of PINGs would otherwise date the last ones milliseconds early
    // (and on_silenced reports this instant to `lifeline bench`).
    if (r.written_now > 0 && session_) session_->on_sent(client_.loop->precise_now());
    if (!best_effort && socket_->queued_bytes() > client_.options.output_budget) {
        down(DisconnectReason::slow_consumer, "server is not reading: output budget exceeded");
        return;
    }
    apply_read_interest();
}

void ClientConnection::flush() {
    const auto r = socket_->flush(*client_.loop, *this);
    if (r.written > 0 && session_) session_->on_sent(client_.loop->precise_now());
    if (r.error != 0) {
        fail_socket(r.error);
        return;
    }
    apply_read_interest();
}

void ClientConnection::apply_read_interest() {
    if (!client_.reading_stopped || !socket_open()) return;
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
    if (!socket_open()) return;  // Between attempts: start() applies it to the next one.
    apply_read_interest();
    // A hung reader cannot notice silence: it keeps pinging on schedule but
    // never convicts. The session keeps the last arrival, for the kernel's verdicts.
    if (session_) session_->stop_judging();
}

void ClientConnection::silence() {
    if (silent_ || state_ != State::open || !session_) return;
    silent_ = true;
    // No timer from now on: nothing to send, nobody to judge.
    client_.loop->cancel(*this);
    if (client_.faults.on_silenced)
        client_.faults.on_silenced(index_, client_.loop->now(), session_->liveness().last_sent());
}

void ClientConnection::abandon() {
    if (state_ != State::open || !socket_open()) return;
    const int kept = ::dup(socket_->fd());
    if (kept >= 0) client_.abandoned_fds.push_back(kept);
    down(DisconnectReason::local_close, "abandoned (testing::abandon): the server was not told");
}

void ClientConnection::forgive_stall(Instant now) {
    if (state_ != State::open || !session_) return;
    session_->on_local_stall(now);
    rearm();
}

void ClientConnection::rearm() {
    if (silent_ || !session_) return;
    const Instant next = session_->next_timeout();
    if (next.is_never()) {
        client_.loop->cancel(*this);  // Raw: no timer once connected.
    } else {
        client_.loop->schedule(*this, next);
    }
}

void ClientConnection::on_timer() {
    switch (state_) {
        case State::waiting:
            start();
            return;
        case State::connecting:
            down(DisconnectReason::unreachable,
                 "TCP connect did not complete within " + to_string(client_.options.connect_timeout));
            return;
        case State::finished:
            return;
        case State::handshake:
        case State::open:
            break;
    }
    if (!session_ || silent_) return;
    session_->handle_timeout(client_.loop->now());
    drain();
}

void ClientConnection::fail_socket(int err) {
    // A failed send may only be the echo of a close that is already waiting in
    // our receive buffer (the server's CLOSE and FIN): read that first, so the
    // connection ends with the server's reason rather than "broken pipe".
    // A stopped reader does not read even now: it would not have seen the close.
    if (!draining_ && !client_.reading_stopped && socket_open() && (err == EPIPE || err == ECONNRESET)) {
        draining_ = true;
        read_available();
        draining_ = false;
        if (!socket_open() || state_ == State::waiting || state_ == State::finished) return;
    }
    Result<sys::TcpInfo> info = socket_ ? sys::read_tcp_info(socket_->fd()) : Result<sys::TcpInfo>(Error{"closed"});
    const DisconnectReason reason =
        sys::classify_socket_error(err, info ? &*info : nullptr, socket_ && socket_->queued_bytes() > 0);
    if (state_ == State::open && session_ &&
        (reason == DisconnectReason::keepalive_timeout || reason == DisconnectReason::user_timeout)) {
        Event e = event(EventKind::dead);
        e.reason = reason;
        e.silence = client_.loop->now() - session_->liveness().last_received();
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
    if (tls_ && socket_open() && tls_->handshake_done()) {
        tls_->shutdown();  // close_notify: the end of the stream is ours, not a truncation.
        send_ciphertext(true);
    }
    tls_.reset();
    socket_.reset();
    session_.reset();
    if (was_open && client_.callbacks.on_down) client_.callbacks.on_down(index_, reason);
    if (!was_open && state_ != State::finished && client_.callbacks.on_connect_failed)
        client_.callbacks.on_connect_failed(index_, reason, message);
    if (client_.options.reconnect && !client_.stopping) {
        schedule_reconnect();
        return;
    }
    if (state_ != State::finished) {
        state_ = State::finished;
        client_.connection_finished();
    }
}

void ClientConnection::schedule_reconnect() {
    // Exponential backoff with full jitter (Brooker, "Exponential Backoff
    // and Jitter", AWS Architecture Blog 2015): a fleet that lost its
    // server at once does not come back at once.
    const int shift = std::min(attempt_, 30);
    const Duration cap =
        std::min(client_.options.backoff_max, client_.options.backoff_initial * (std::int64_t{1} << shift));
    const Duration delay = Duration::nanoseconds(std::uniform_int_distribution<std::int64_t>(0, cap.ns())(client_.rng));
    ++attempt_;
    state_ = State::waiting;
    Event e = event(EventKind::error);
    e.message = "reconnecting in " + to_string(delay) + " (attempt " + std::to_string(attempt_) + ")";
    client_.emit(e);
    client_.loop->schedule(*this, client_.loop->now() + delay);
}

void ClientConnection::stop() {
    if (state_ == State::waiting) {
        // Between attempts there is no connection to report on.
        client_.loop->cancel(*this);
        state_ = State::finished;
        client_.connection_finished();
        return;
    }
    if (state_ == State::finished) return;
    if (state_ == State::open && session_ && !silent_) {
        session_->close(CloseCode::normal, "client stopping", DisconnectReason::shutdown);
        drain();  // The CLOSE, then `closed`: down().
    }
    if (state_ != State::finished && state_ != State::waiting) down(DisconnectReason::shutdown, "client stopping");
}

}  // namespace lifeline::runtime
