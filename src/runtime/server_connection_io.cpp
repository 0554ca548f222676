// The socket's side of a server connection: readiness (epoll) and
// completions (io_uring) in, TLS records and plaintext out, and a socket
// error turned into exactly one disconnect reason. The session's side and
// the timers are in server_connection.cpp.
#include <cerrno>
#include <cstring>

#include "lifeline/sys/socket_options.hpp"
#include "lifeline/sys/tcp_info.hpp"
#include "net/endpoint.hpp"
#include "runtime/server_connection.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline::runtime {

namespace {

constexpr int kMaxReadsPerEvent = 16;  // 1 MiB per connection per turn: one busy peer cannot starve the rest.

}  // namespace

// ---- The socket's side ---------------------------------------------------------

void Connection::on_io(std::uint32_t events) {
    if (finished_) return;
    if (events & EPOLLERR) {
        close_on_socket_error(net::connect_result(socket_.fd()));
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) read_available();
    if (!finished_ && (events & EPOLLOUT)) flush();
}

void Connection::read_available() {
    std::vector<std::uint8_t>& scratch = worker().scratch();
    for (int i = 0; i < kMaxReadsPerEvent && !finished_; ++i) {
        const StreamSocket::ReadResult r = socket_.read(scratch);
        if (!take_read(r, scratch) || r.bytes < scratch.size()) return;  // < scratch: drained.
    }
}

bool Connection::take_read(const StreamSocket::ReadResult& r, std::span<const std::uint8_t> bytes) {
    switch (r.status) {
        case StreamSocket::ReadStatus::data:
            if (tls()) return take_tls(bytes.first(r.bytes));
            session_.receive(bytes.first(r.bytes), now());
            drain();
            return true;
        case StreamSocket::ReadStatus::would_block:
            return false;
        case StreamSocket::ReadStatus::eof:
            // While draining after ECONNRESET, end of stream is only the
            // reset socket (its error already taken): the RST decides.
            if (!draining_input_) close(DisconnectReason::peer_closed);
            return false;
        case StreamSocket::ReadStatus::error:
            close_on_socket_error(r.error);
            return false;
    }
    return false;
}

void Connection::on_ring(const RingCompletion& c) {
    EventLoop& loop = worker().loop();
    if (c.op == RingOp::receive) {
        const StreamSocket::ReadResult r = socket_.received(loop, *this, c);
        if (!finished_) take_read(r, c.bytes);
    } else {
        const StreamSocket::SentResult r = socket_.sent(loop, *this, c);
        if (!finished_) after_send(r.written, r.error);
    }
    if (finished_ && !socket_.ring_busy()) worker().release(this);  // May free this.
}

void Connection::on_ring_flush() {
    socket_.flush_turn(worker().loop(), *this);
    if (finished_ && !socket_.ring_busy()) worker().release(this);  // May free this.
}

bool Connection::take_tls(std::span<const std::uint8_t> ciphertext) {
    std::vector<std::uint8_t> plaintext;
    const Result<void> r = tls()->receive(ciphertext, plaintext);
    send_ciphertext(false);  // Handshake records, alerts.
    if (finished_) return false;
    if (!r) {
        Event e = event(EventKind::error);
        e.message = r.error().message;
        worker().server().emit(e);
        session_.abort(DisconnectReason::protocol_error, r.error().message);
        drain();
        return false;
    }
    if (!plaintext.empty()) session_.receive(plaintext, now());
    drain();
    return true;
}

void Connection::send_ciphertext(bool best_effort) {
    const std::vector<std::uint8_t> out = tls()->take_ciphertext();
    if (out.empty() || finished_) return;
    write_to_socket(out, false, best_effort);
}

void Connection::transmit(std::span<const std::uint8_t> bytes, bool control, bool best_effort) {
    if (finished_) return;
    if (best_effort && socket_.backlog_bytes(worker().loop()) + bytes.size() > worker().options().output_budget) return;
    if (TlsStream* tls_stream = tls()) {
        // Records are opaque to the queue: control bytes cannot jump ahead of them.
        if (Result<void> r = tls_stream->send(bytes); !r) {
            close(DisconnectReason::local_close, r.error().message);
            return;
        }
        send_ciphertext(best_effort);
        return;
    }
    write_to_socket(bytes, control, best_effort);
}

void Connection::write_to_socket(std::span<const std::uint8_t> bytes, bool control, bool best_effort) {
    EventLoop& loop = worker().loop();
    const StreamSocket::SendResult r = socket_.send(loop, *this, bytes, control);
    if (r.error != 0) {
        if (!best_effort) close_on_socket_error(r.error);
        return;
    }
    if (r.written_now > 0) session_.on_sent(loop.now());
    check_backlog();
}

void Connection::flush() {
    const OutputQueue::FlushResult r = socket_.flush(worker().loop(), *this);
    after_send(r.written, r.error);
}

void Connection::after_send(std::size_t written, int error) {
    if (written > 0) session_.on_sent(now());
    if (error != 0) {
        close_on_socket_error(error);
        return;
    }
    // Shutting down: the CLOSE frame (and whatever was before it) is out.
    if (shutdown_flush_ && !output_pending()) {
        close(DisconnectReason::shutdown);
        return;
    }
    check_backlog();
}

void Connection::close_on_socket_error(int err) {
    // A failed send may only echo a close already waiting in the receive
    // buffer (a CLOSE frame, a FIN): read that first so the reason is the peer's.
    // Not on an io_uring loop: its receive is armed, and earlier bytes may
    // still wait in the completion queue, so a read here could take later
    // bytes first (there, a rare send error can win over the peer's CLOSE).
    const bool session_closed = session_.state() == ServerSession::State::closed;
    if (!draining_input_ && !finished_ && !session_closed && !socket_.served_by_ring() &&
        (err == EPIPE || err == ECONNRESET)) {
        draining_input_ = true;
        read_available();
        draining_input_ = false;
        if (finished_ || session_.state() == ServerSession::State::closed) return;
    }
    Result<sys::TcpInfo> info = sys::read_tcp_info(socket_.fd());
    const DisconnectReason reason = sys::classify_socket_error(err, info ? &*info : nullptr, output_pending());
    Server::Impl& server = worker().server();
    if (reason == DisconnectReason::slow_consumer) {
        // TCP_USER_TIMEOUT ended a live peer behind a zero window before our
        // own grace ran out (sys::classify_socket_error).
        Event e = event(EventKind::error);
        e.message = "peer is not reading: the kernel's user timeout ended its zero window (" +
                    std::to_string(socket_.queued_bytes()) + " bytes still queued here)";
        server.emit(e);
    }
    if (reason == DisconnectReason::keepalive_timeout || reason == DisconnectReason::user_timeout) {
        Event e = event(EventKind::dead);
        e.reason = reason;
        e.silence = now() - session_.liveness().last_received();
        const KeepalivePolicy& k = server.options.keepalive;
        e.budget = reason == DisconnectReason::user_timeout ? k.user_timeout_value() : k.budget();
        e.rtt = last_rtt();
        server.metrics.detection_latency.observe(e.silence);
        server.emit(e);
    }
    close(reason, err != 0 ? std::strerror(err) : "");
}

}  // namespace lifeline::runtime
