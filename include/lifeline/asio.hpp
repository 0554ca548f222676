// Drives a ServerSession or ClientSession over a standalone Asio TCP socket
// (header-only; needs <asio.hpp> from Debian's libasio-dev, ASIO_STANDALONE,
// and links only lifeline_core). One async read at a time, one async write of
// everything the session queued, and one asio::steady_timer per connection
// set from the session's next_timeout().
//
//   auto conn = lifeline::AsioConnection<lifeline::ServerSession>::create(
//       std::move(socket), std::make_unique<lifeline::ServerSession>(config, ++number, lifeline::asio_now()),
//       [](auto& c, const lifeline::SessionEvent& e) { ... c.send(e.payload); ... });
//   conn->start();
//
// Threads: an AsioConnection belongs to its socket's executor. Call start(),
// send(), close() and session() only from a handler running there (one
// thread running the io_context, or a strand); from anywhere else, post to
// that executor. The event callback runs there too and may call send() and
// close() (re-entry is queued, not recursed). Nothing here blocks.
//
// Lifetime: create() returns a shared_ptr and every pending handler holds
// one, so the connection lives until the session is closed and its last
// bytes are written (or the socket broke); then the socket is closed, the
// timer cancelled, and the object goes away when the caller drops its copy.
//
// Errors: socket errors end the session (abort) with a reason from the error
// code: end of stream is peer_closed, ECONNRESET/EPIPE peer_reset, ETIMEDOUT
// user_timeout, EHOSTUNREACH/ENETUNREACH unreachable; the callback sees
// `closed` with that reason and the error's text. send() returns the
// session's errors (not open, too large). The callback is told everything the
// session reports: opened, message, rtt, dead, error, and closed exactly once.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/session_event.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// Now on asio::steady_timer's clock (std::chrono::steady_clock: monotonic, so
// a wall-clock step neither fakes nor hides a timeout), as an Instant.
inline Instant asio_now() {
    const auto since = asio::steady_timer::clock_type::now().time_since_epoch();
    return Instant::from_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(since).count());
}

// Why a socket error ended the connection.
inline DisconnectReason asio_disconnect_reason(const std::error_code& ec) {
    if (ec == asio::error::eof) return DisconnectReason::peer_closed;
    if (ec == asio::error::timed_out) return DisconnectReason::user_timeout;
    if (ec == asio::error::host_unreachable || ec == asio::error::network_unreachable) {
        return DisconnectReason::unreachable;
    }
    return DisconnectReason::peer_reset;
}

template <class Session>
class AsioConnection : public std::enable_shared_from_this<AsioConnection<Session>> {
public:
    using EventCallback = std::function<void(AsioConnection&, const SessionEvent&)>;

    // `session` was made for this socket, with asio_now() as its clock.
    static std::shared_ptr<AsioConnection> create(asio::ip::tcp::socket socket, std::unique_ptr<Session> session,
                                                  EventCallback on_event) {
        return std::shared_ptr<AsioConnection>(
            new AsioConnection(std::move(socket), std::move(session), std::move(on_event)));
    }

    // Starts reading, writes what the session queued (a client's HELLO), arms the timer. Once.
    void start() {
        read();
        pump();
    }
    // Queues application data (framed: one DATA frame). Errors: the session's.
    Result<void> send(std::span<const std::uint8_t> payload) {
        Result<void> queued = session_->send(payload);
        pump();
        return queued;
    }
    // Ends the session with a CLOSE frame (framed); the socket closes once it is written.
    void close(CloseCode code, std::string_view text, DisconnectReason reason) {
        session_->close(code, text, reason);
        pump();
    }

    Session& session() { return *session_; }
    asio::ip::tcp::socket& socket() { return socket_; }

private:
    AsioConnection(asio::ip::tcp::socket socket, std::unique_ptr<Session> session, EventCallback on_event)
        : socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          session_(std::move(session)),
          on_event_(std::move(on_event)) {}

    void read() {
        socket_.async_read_some(
            asio::buffer(input_), [self = this->shared_from_this()](std::error_code ec, std::size_t n) {
                if (ec == asio::error::operation_aborted || self->finished_) return;  // We closed the socket.
                if (ec) {
                    self->fail(ec);
                    return;
                }
                self->session_->receive(std::span<const std::uint8_t>(self->input_.data(), n), asio_now());
                self->pump();
                if (!self->closed_) self->read();
            });
    }

    void write() {
        if (writing_ || output_.empty() || broken_) return;
        in_flight_.swap(output_);  // output_ collects what comes next meanwhile.
        writing_ = true;
        asio::async_write(socket_, asio::buffer(in_flight_),
                          [self = this->shared_from_this()](std::error_code ec, std::size_t) {
                              self->writing_ = false;
                              self->in_flight_.clear();
                              if (ec == asio::error::operation_aborted || self->finished_) return;
                              if (ec) {
                                  self->fail(ec);
                                  return;
                              }
                              self->session_->on_sent(asio_now());
                              self->pump();
                          });
    }

    void arm_timer() {
        const Instant deadline = closed_ ? Instant::never() : session_->next_timeout();
        if (deadline == armed_for_) return;  // A busy connection does not touch the timer.
        armed_for_ = deadline;
        if (deadline == Instant::never()) {
            timer_.cancel();
            return;
        }
        // Instants come from asio_now(), so they share the timer's epoch.
        timer_.expires_at(asio::steady_timer::time_point(std::chrono::duration_cast<asio::steady_timer::duration>(
            std::chrono::nanoseconds(deadline.ns_since_epoch()))));
        timer_.async_wait([self = this->shared_from_this()](std::error_code ec) {
            if (ec == asio::error::operation_aborted || self->finished_) return;  // Re-armed or closed.
            self->armed_for_ = Instant::unset();
            self->session_->handle_timeout(asio_now());  // Early (a stale wait) is harmless.
            self->pump();
        });
    }

    void fail(const std::error_code& ec) {
        broken_ = true;  // Nothing more can be written.
        output_.clear();
        session_->abort(asio_disconnect_reason(ec), ec.message());
        pump();
    }

    // Events to the callback, bytes to the socket, the timer to the next deadline.
    void pump() {
        if (pumping_) {
            again_ = true;  // Called from the callback: the outer pump picks it up.
            return;
        }
        pumping_ = true;
        do {
            again_ = false;
            while (auto e = session_->poll_event()) {
                if (e->kind == SessionEventKind::closed) closed_ = true;
                if (on_event_) on_event_(*this, *e);
            }
            // The span is valid only until the next call on the session: copy it out at once.
            while (auto t = session_->poll_transmit()) output_.insert(output_.end(), t->bytes.begin(), t->bytes.end());
        } while (again_);
        pumping_ = false;
        if (broken_) output_.clear();
        write();
        arm_timer();
        if (closed_ && !finished_ && !writing_ && output_.empty()) {
            finished_ = true;
            std::error_code ignored;
            socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
            socket_.close(ignored);
            timer_.cancel();
        }
    }

    asio::ip::tcp::socket socket_;
    asio::steady_timer timer_;
    std::unique_ptr<Session> session_;
    EventCallback on_event_;
    std::array<std::uint8_t, 16 * 1024> input_{};  // One read's worth; the session buffers partial frames.
    std::vector<std::uint8_t> output_, in_flight_;
    Instant armed_for_ = Instant::unset();
    bool pumping_ = false, again_ = false;
    bool writing_ = false, broken_ = false;
    bool closed_ = false, finished_ = false;  // The session ended; the socket is closed.
};

}  // namespace lifeline
