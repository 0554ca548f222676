// One accepted connection: a ServerSession (every protocol rule) driven over a
// StreamSocket with the loop's time. What is left here is transport: reads,
// writes, output backpressure and the slow-consumer verdict, what the kernel
// says about a failed socket, and turning session events into server events.
// Internal to src/runtime.
//
// Its TimerNode (the LoopObject base) is its only timer: the session's
// next_timeout(), or the slow-consumer deadline when that is sooner.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "lifeline/connection.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/tls.hpp"
#include "lifeline/events.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/stream_socket.hpp"

namespace lifeline::runtime {

class Worker;

class Connection final : public LoopObject {
public:
    Connection(Worker& worker, int fd, const sockaddr_storage& peer, std::uint64_t id, Instant now);
    ~Connection() override;

    void on_io(std::uint32_t events) override;
    void on_timer() override;
    void on_ring(const RingCompletion& completion) override;
    void on_ring_flush() override;

    void start();
    // Ends the connection without a frame (the transport knows why). Once.
    void close(DisconnectReason reason, const std::string& message = "");
    // Ends it with a CLOSE frame (framed mode, best effort) carrying `code`.
    void close_with_frame(DisconnectReason reason, CloseCode code, const std::string& text);
    // Server shutdown: CLOSE shutdown to an open framed peer; the connection
    // ends once that is out (or at the flush deadline: finish_shutdown()).
    void shut_down();
    void finish_shutdown();
    // Sends push filler (one whole DATA frame when framed) through the
    // ordinary output path: it counts toward the output budget and as bytes
    // sent, never as bytes received. May close the connection (slow_consumer,
    // a send error).
    void push_filler(std::span<const std::uint8_t> bytes, std::size_t payload) {
        count_data(0, payload);
        transmit(bytes, false);
    }
    // Backpressured (reading paused, or more than the budget refused by the
    // kernel): pushing more would only grow the queue.
    bool over_budget() const { return over_budget_ms() != 0; }
    void forgive_stall(Instant now, Duration lag);
    nlohmann::json describe(Instant now) const;

    // ---- The gateway API (server_gateway_connection.cpp) ----
    ConnectionId handle() const;
    // The same, as the session directory names its holders.
    ConnectionRef handle_ref() const;
    // The application's DATA (raw: bytes). Errors: not_open, too_large.
    Result<SendStatus> send_app(std::span<const std::uint8_t> payload);
    // One frame encoded by the caller (broadcast); `payload` bytes of it are
    // application data. False when it was dropped (over the budget, not open).
    bool send_encoded(std::span<const std::uint8_t> frame, std::size_t payload);
    // The application closes it: CLOSE `code` (framed), reason local_close.
    void close_by_app(std::uint16_t code, const std::string& text);
    ConnectionStats stats() const;
    void set_context(void* context) { extras().context = context; }
    void* context() const { return extras_if_any() != nullptr ? extras_if_any()->context : nullptr; }

    std::uint64_t id() const { return session_.number(); }
    // Its place in the worker's ConnectionSlab, which knows it from the address.
    std::uint32_t slot() const;
    bool open() const { return session_.state() == ServerSession::State::open; }
    bool closed() const { return finished_; }
    bool output_pending() const { return socket_.queued_bytes() > 0; }
    // io_uring: operations still in flight; a closed connection lingers until none are.
    bool ring_busy() const { return socket_.ring_busy(); }
    std::string client_id() const { return session_.client_id(); }
    // "198.18.0.2:40122", recorded at accept: still right after a reset.
    std::string peer() const;

private:
    void read_available();
    // What a read (or a receive completion) brought; false when reading should stop.
    bool take_read(const StreamSocket::ReadResult& r, std::span<const std::uint8_t> bytes);
    void after_send(std::size_t written, int error);
    // Hands what the session produced to the socket and to the server, until
    // it has nothing more; safe to re-enter (a send error closes the session).
    void drain();
    // The session's frames to the socket now (inside a callback too: what
    // the application sends must count toward its budget at once).
    void write_session_output();
    void on_session_event(SessionEvent& e);
    void on_opened(const SessionEvent& e);
    void on_message(const SessionEvent& e);
    void on_dead(const SessionEvent& e);
    // Framed: the application admits or rejects the HELLO (ServerCallbacks::on_hello).
    void on_hello(const SessionEvent& e);
    // Runs an application callback; one that throws closes only this
    // connection (an `error` event says what it threw). False if it threw.
    template <class F>
    bool guarded(const char* name, F&& callback);
    void callback_threw(const char* name, std::exception_ptr error);
    // "on_message threw: <what>".
    static std::string describe_throw(const char* name, std::exception_ptr error);
    // A send() said `full` and the queue has drained to half the budget.
    void maybe_writable();
    // The session is closed: report it, release the id, close the socket.
    void finish(DisconnectReason reason, const std::string& message);
    // A session with a chosen id ended: presence (fenced) and, if it was ever online, the `offline` event.
    Duration detected_after(DisconnectReason reason) const;
    void report_offline(DisconnectReason reason);
    // `best_effort`: bytes sent on the way out (CLOSE). They never change how
    // the connection ends: a send error or a full budget just drops them.
    void transmit(std::span<const std::uint8_t> bytes, bool control, bool best_effort = false);
    void flush();
    void close_on_socket_error(int err);
    // TLS: ciphertext in (false: stop reading), and what TLS has for the socket out.
    bool take_tls(std::span<const std::uint8_t> ciphertext);
    Instant tls_handshake_deadline() const;
    void send_ciphertext(bool best_effort);
    // Bytes to the socket (ciphertext with TLS); errors close the connection unless best_effort.
    void write_to_socket(std::span<const std::uint8_t> bytes, bool control, bool best_effort);
    // Output backpressure (ServerOptions::output_budget): pause or resume
    // reading, start or clear the slow-consumer clock.
    void check_backlog();
    void refused_over_budget();
    // The slow-consumer clock ran out: ask the kernel who is at fault.
    void judge_stalled_output(Instant now);
    Duration slow_consumer_grace() const;
    Instant over_budget_deadline() const;
    // While reading is paused, a live peer as the kernel sees it (window
    // probes answered) is not silent: its heartbeats wait unread behind us.
    void credit_unread_input(Instant now);
    void rearm();
    Event event(EventKind kind) const;
    // Heartbeat RTT when there is one; else the kernel's smoothed RTT.
    Duration last_rtt() const;
    // The timeout this connection is judged by (before a HELLO, or raw
    // without --idle-timeout, the server's default).
    Duration judged_timeout() const;
    Instant now() const;

    // The worker is not stored: every call runs on its loop thread, which knows
    // it (8 bytes saved on every idle connection).
    static Worker& worker();

    ServerSession session_;
    StreamSocket socket_;
    // What few connections need: an IPv6 peer's address and application byte
    // counts. Kept as the session's owner data: a connection without them
    // pays nothing here (it used to pay a pointer of its own).
    struct Extras {
        std::string peer;  // Formatted; set for peers that are not IPv4.
        std::uint64_t data_in = 0;
        std::uint64_t data_out = 0;
        void* context = nullptr;  // Server::set_context().
        // When the queue went over the output budget, ms since accept + 1 (0:
        // it is not). Here, not in the connection: a connection that was never
        // backpressured (almost all) pays nothing for it.
        std::uint32_t over_budget_ms = 0;
        // With TLS: ciphertext on the socket, plaintext in the session (here:
        // a TLS connection is never an idle one that costs nothing anyway).
        std::unique_ptr<TlsStream> tls;
    };
    Extras* extras_if_any() const { return static_cast<Extras*>(session_.owner_data()); }
    TlsStream* tls() const { return extras_if_any() != nullptr ? extras_if_any()->tls.get() : nullptr; }
    Extras& extras();
    // Application bytes in and out (Extras: an idle connection pays nothing).
    void count_data(std::size_t in, std::size_t out);
    std::uint32_t over_budget_ms() const { return extras_if_any() != nullptr ? extras_if_any()->over_budget_ms : 0; }
    // Allocates the Extras only to set a clock, never to clear one.
    void set_over_budget_ms(std::uint32_t ms);
    std::uint32_t peer_v4_ = 0;  // An IPv4 peer's address, network byte order.
    std::uint16_t peer_port_ = 0;
    bool finished_ : 1 = false;          // finish() ran: the socket is closed (or closing).
    bool draining_input_ : 1 = false;    // Reading what the peer sent before a send error.
    bool draining_session_ : 1 = false;  // Inside drain().
    bool drain_again_ : 1 = false;       // drain() was called from inside drain().
    bool shutdown_flush_ : 1 = false;    // Closed for shutdown; waits for its output to leave.
    bool admitted_ : 1 = false;          // on_open ran: on_close is owed, once.
    bool wants_writable_ : 1 = false;    // A send() said `full`: on_writable is owed.
    bool stored_id_ : 1 = false;         // The session's id is the directory's (pinned until finish()).
};

template <class F>
bool Connection::guarded(const char* name, F&& callback) {
    try {
        callback();
        return true;
    } catch (...) {
        callback_threw(name, std::current_exception());
        return false;
    }
}

}  // namespace lifeline::runtime
