// The server's side of one connection, sans-IO: docs/PROTOCOL.md's rules in
// one object that takes bytes and the time, and gives back bytes to send,
// events and when it next wants to be woken (the model: ngtcp2, quinn-proto).
//
//   ServerSession s(config, /*number=*/7, now);         // at accept
//   s.receive(bytes_read, now);                          // whenever bytes arrive
//   if (now >= s.next_timeout()) s.handle_timeout(now);  // from your timer
//   while (auto t = s.poll_transmit()) write_all(fd, t->bytes);
//   while (auto e = s.poll_event()) handle(*e);          // closed: close the socket
//
// The rules it keeps: HELLO within the handshake timeout of accept (else
// CLOSE handshake_timeout); the HELLO's interval and timeout granted within
// the server's limits; a PING costs a token from a small bucket refilled at
// the fastest allowed rate (else CLOSE too_many_pings); PONG at once; PINGs of
// its own only when quiet (config.server_pings); any byte from the peer is
// liveness; silence past the granted timeout is `dead` (heartbeat_timeout,
// CLOSE heartbeat_timeout); RTT from PONGs (RFC 6298). In raw mode there is no
// protocol: every byte is a message and liveness, and `idle_timeout` (if set)
// ends a silent connection with idle_timeout. With `websocket`, the same
// rules ride on RFC 6455 (lifeline/engine/websocket.hpp): an HTTP upgrade
// instead of HELLO/WELCOME (the id from `?id=`; with admission, the `hello`
// event carries the credential from `Authorization: Bearer` or `?token=`, the
// resume token from `?resume=` in hex and the target; admit() answers 101
// with a `Lifeline-Resume-Token` header, reject() HTTP 403), WebSocket pings and pongs
// (the server always pings when quiet: browsers only answer), text and binary
// messages, close codes from websocket_close_code(); a bad upgrade is an HTTP
// error, a bad frame a close with RFC 6455's code.
//
// Threads: none. One session is used by one thread at a time; sessions share
// nothing but their config. Errors: send() returns them; everything the peer
// does wrong becomes events (`error`, then `closed` with protocol_error) and
// costs only this session. Not movable: it holds pointers into itself (keep
// it in place, in a unique_ptr, or in your connection object).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/failure_detector.hpp"
#include "lifeline/engine/liveness.hpp"
#include "lifeline/engine/session_event.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// Counts shared by many sessions (for metrics); relaxed atomics, so any thread may read them.
struct SessionCounters {
    std::atomic<std::uint64_t> pings_received{0};   // PINGs from peers
    std::atomic<std::uint64_t> heartbeats_sent{0};  // PINGs and PONGs we sent
    std::atomic<std::uint64_t> protocol_errors{0};  // sessions ended by a peer breaking the protocol
};

struct ServerSessionConfig {
    bool framed = true;                                   // false: raw TCP, no protocol.
    bool websocket = false;                               // With framed: RFC 6455 instead of lifeline's frames.
    Duration heartbeat = Duration::seconds(1);            // Interval granted when HELLO asks for 0.
    Duration timeout = Duration::seconds(3);              // Timeout granted when HELLO asks for 0.
    Duration min_interval = Duration::milliseconds(100);  // Fastest interval granted; one PING token per this.
    Duration max_timeout = Duration::hours(1);            // Longest timeout granted.
    Duration handshake_timeout = Duration::seconds(5);    // HELLO must arrive within this of accept.
    Duration idle_timeout = Duration::zero();             // Raw: end after this long without a byte (0: never).
    bool server_pings = false;                            // Also PING a quiet peer (framed).
    // Framed: after a valid HELLO, wait for admit() or reject() instead of
    // answering WELCOME at once (the `hello` event carries what it asked).
    // Bytes that arrive meanwhile (a client may pipeline frames after its
    // HELLO) are held, up to one largest frame (5 + max_body_size bytes; more
    // is a protocol error), and handled once admitted; reject() drops them.
    bool admission = false;
    std::size_t max_body_size = kDefaultMaxBodySize;  // Larger frames are a protocol error.
    SessionCounters* counters = nullptr;              // Optional; must outlive the sessions.

    // Ranges and consistency; the message names the field (e.g. "timeout (2s)
    // must be longer than heartbeat (3s)").
    Result<void> validate() const;
};

// PINGs a client may send at once (the token bucket's depth).
inline constexpr std::uint8_t kPingBurst = 4;

namespace ws {
struct Upgrade;
struct WsFrame;
enum class Opcode : std::uint8_t;
}  // namespace ws

class ServerSession {
public:
    // admitting: a HELLO arrived and waits for admit()/reject() (config.admission).
    enum class State : std::uint8_t { handshake, admitting, open, closed };

    // `config` must outlive the session and be valid (validate()). `number`
    // names the connection: a client without an id of its own is "c<number>".
    ServerSession(const ServerSessionConfig& config, std::uint64_t number, Instant now);
    ~ServerSession();
    ServerSession(const ServerSession&) = delete;
    ServerSession& operator=(const ServerSession&) = delete;

    // Inputs.
    void receive(std::span<const std::uint8_t> bytes, Instant now);
    // Call at (or after) next_timeout(); early calls are harmless.
    void handle_timeout(Instant now);
    // Queues application data (framed: one DATA frame). Errors: the session
    // is not open, or the payload is larger than config.max_body_size.
    Result<void> send(std::span<const std::uint8_t> payload);
    // WebSocket: a text message (UTF-8, else invalid_argument); elsewhere the same as send().
    Result<void> send_text(std::span<const std::uint8_t> payload);
    // The bytes send() would queue for `payload`, for a message encoded once
    // and written to many connections (broadcast). Errors as send()'s.
    static Result<void> encode_message(const ServerSessionConfig& config, std::span<const std::uint8_t> payload,
                                       std::vector<std::uint8_t>& out);
    // Ends the session with a CLOSE frame (framed) carrying `code` and `text`
    // (cut to 120 bytes of valid UTF-8), then `closed` with `reason`.
    void close(CloseCode code, std::string_view text, DisconnectReason reason);
    // The same with any code (an application's own start at 1000).
    void close(std::uint16_t code, std::string_view text, DisconnectReason reason);
    // config.admission, in State::admitting only: answer the HELLO. admit()
    // sends WELCOME (with `resume_token`, at most 64 bytes, if not empty) and
    // opens the session; liveness is judged from `now`. Errors: not_open (not
    // admitting), too_large (token). reject() sends CLOSE `code` and closes
    // with reason `rejected`; a no-op when not admitting.
    Result<void> admit(std::string_view resume_token, Instant now);
    void reject(std::uint16_t code, std::string_view text);
    // Ends the session at once, no frame: the transport already knows why (a
    // reset, a kernel timeout, a slow consumer).
    void abort(DisconnectReason reason, std::string_view message);
    // Something of ours left for the peer at `now`: a busy sender needs no PING.
    void on_sent(Instant now);
    // Evidence from outside the byte stream that the peer is alive at `now`
    // (for example, the kernel sees it acknowledge while we are not reading).
    void on_peer_alive(Instant now);
    // Our own process stalled for `lag` until `now`: the silence was ours, and
    // PINGs that queued up meanwhile are not abuse.
    void on_local_stall(Instant now, Duration lag);

    // Outputs.
    std::optional<Transmit> poll_transmit() { return outbox_.poll_transmit(); }
    std::optional<SessionEvent> poll_event() { return outbox_.poll_event(); }
    // never() when closed, or in raw mode without an idle timeout.
    Instant next_timeout() const;

    // Facts.
    State state() const { return state_; }
    std::uint64_t number() const { return number_; }
    // The id the client chose, else "c<number>" once greeted; empty before HELLO and in raw mode.
    std::string client_id() const;
    // The id the client chose itself (for takeover); empty if none. Valid
    // until the session changes (or, once stored, until forget_stored_id()).
    std::string_view chosen_id() const;
    // The owner keeps the chosen id from now on, at `stored` (a length byte,
    // then the bytes: SessionDirectory's stored id), which stays valid until
    // forget_stored_id(): the session drops its own copy. Once open, a framed
    // session then needs no heap memory of its own for its id.
    void use_stored_id(const std::uint8_t* stored);
    // The stored id is about to go: chosen_id() is empty from now on.
    void forget_stored_id();
    // One pointer the owner keeps with the session (ngtcp2's user_data), in
    // the session's extras: a session whose owner needs nothing more pays
    // nothing for it. The session never reads or frees it.
    void set_owner_data(void* data) { extras().owner_data = data; }
    void* owner_data() const {
        const Extras* x = extras_if_any();
        return x != nullptr ? x->owner_data : nullptr;
    }
    Instant accepted_at() const { return accepted_at_; }
    const LivenessMachine& liveness() const { return liveness_; }
    Duration timeout() const { return liveness_.timeout(); }
    std::size_t pending_bytes() const { return outbox_.pending_bytes(); }

private:
    void handle_frame(const Frame& frame, Instant now);
    void handle_hello(const Hello& hello, Instant now);
    void open_session(std::string_view resume_token);
    void finish_with_close(std::uint16_t code, std::string_view text, DisconnectReason reason, std::string message);
    void handle_ping(const Ping& ping, Instant now);
    void protocol_violation(CloseCode code, const std::string& message);
    void control(const Frame& frame);
    void finish(DisconnectReason reason, std::string message);
    void count(std::atomic<std::uint64_t> SessionCounters::*counter) const;
    bool take_ping_token(Instant now);
    // The WebSocket wire (server_session_websocket.cpp).
    struct WebSocketState;
    WebSocketState& ws_state();
    void ws_receive(std::span<const std::uint8_t> bytes, Instant now);
    void ws_frames(std::span<const std::uint8_t> input, Instant now);
    void ws_upgraded(const ws::Upgrade& upgrade, std::span<const std::uint8_t> rest, Instant now);
    void ws_open_session(std::string_view resume_token);
    void ws_refuse_admission(std::uint16_t code, std::string_view text);
    SessionEvent ws_event(SessionEventKind kind, std::string id) const;
    void ws_refuse_upgrade(int status, const std::string& why);
    void ws_frame(ws::WsFrame& frame, Instant now);
    void ws_data(ws::WsFrame& frame);
    void ws_peer_close(std::span<const std::uint8_t> payload);
    void ws_violation(std::uint16_t close_code, const std::string& message);
    void ws_control(ws::Opcode opcode, std::span<const std::uint8_t> payload);
    void ws_send_ping(const Ping& ping);
    void ws_close_frame(std::uint16_t code, std::string_view text);
    Result<void> ws_send(std::span<const std::uint8_t> payload, bool text);

    const ServerSessionConfig* config_;
    LivenessMachine liveness_;  // With its own fixed timeout: no detector object (16 bytes).
    FrameDecoder decoder_;
    SessionOutbox outbox_;  // Also the word of the extras (below).
    // What few sessions need, 8 bytes for the rest: the id a client chose,
    // and input held while its HELLO waits for admission.
    struct Extras {
        Extras();
        ~Extras();
        std::string chosen_id;                    // Until the owner stores it (use_stored_id()).
        const std::uint8_t* stored_id = nullptr;  // From then on.
        std::vector<std::uint8_t> held;
        std::unique_ptr<WebSocketState> websocket;
        void* owner_data = nullptr;  // set_owner_data().
    };
    // One word, parked in the outbox (SessionOutbox::park(), so it costs
    // nothing of its own): an owned Extras, or (bit 1 set) only the owner's
    // stored id. An admitted framed session with an id needs nothing else,
    // and so pays 8 bytes for its outbox and its id together, instead of
    // 8 + 8 (and an 80-byte Extras with its id's 48-byte heap buffer before
    // that: docs/BENCHMARKS.md, "Where an idle connection's bytes go").
    static constexpr std::uintptr_t kStoredIdTag = 2;
    Extras* extras_if_any() const {
        const std::uintptr_t word = outbox_.parked();
        return (word & kStoredIdTag) != 0 ? nullptr : reinterpret_cast<Extras*>(word);
    }
    // extras_if_any(), allocated if there is none (a stored id moves into it).
    Extras& extras();
    const std::uint8_t* stored_id() const;
    // Frees the Extras (and the session's own copy of the id) if nothing else needs it.
    void store_id(const std::uint8_t* stored);
    void hold(std::span<const std::uint8_t> bytes);
    Instant accepted_at_;
    std::uint64_t number_;
    std::uint32_t last_ping_ms_ = 0;  // Last token refill, ms since accept (wrapping).
    State state_ = State::handshake;
    std::uint8_t ping_tokens_ = kPingBurst;
    bool pinged_ = false;  // A PING arrived (the bucket's clock has started).
};

}  // namespace lifeline
