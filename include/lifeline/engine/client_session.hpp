// The client's side of one connection, sans-IO: the rules `lifeline connect`
// follows (docs/PROTOCOL.md), in one object that takes bytes and the time and
// gives back bytes to send, events and when it next wants to be woken.
//
//   ClientSession s(config, now);                        // once TCP is connected: HELLO is queued
//   s.receive(bytes_read, now);
//   if (now >= s.next_timeout()) s.handle_timeout(now);
//   while (auto t = s.poll_transmit()) write_all(fd, t->bytes);
//   while (auto e = s.poll_event()) handle(*e);          // closed: close the socket
//
// The rules: HELLO first, asking for config.heartbeat and config.timeout;
// WELCOME within config.handshake_timeout (else `closed` with unreachable);
// the interval is the server's to grant, the timeout the longer of ours and
// the granted one; a PING when quiet for the interval; PONG at once; any
// byte is liveness; silence past the timeout is `dead` (heartbeat_timeout,
// CLOSE heartbeat_timeout); a CLOSE from the server ends the session with its
// reason (session_replaced, protocol_error, or peer_closed). Raw mode: no
// protocol, no timer; the session only counts bytes as messages.
//
// WebSocket (config.websocket): the same rules over RFC 6455. The upgrade
// request (id, credential and resume token in its query) stands for HELLO,
// the 101 for WELCOME (it may carry a resume token); WebSocket ping/pong
// frames carry the heartbeats, masked as a client's frames must be; there is
// no grant, so config.heartbeat and config.timeout apply as asked. A refused
// upgrade (HTTP 403) is `rejected`; close codes 4000 + lifeline's code map
// back to its reasons (docs/PROTOCOL.md, "WebSocket").
//
// Threads: none; one thread at a time per session. Errors: send() returns
// them; a server that breaks the protocol ends the session (`closed`,
// protocol_error). Not movable (it points into itself).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/failure_detector.hpp"
#include "lifeline/engine/liveness.hpp"
#include "lifeline/engine/session_event.hpp"
#include "lifeline/engine/websocket.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

struct ClientSessionConfig {
    bool framed = true;                         // false: raw TCP, no protocol.
    Duration heartbeat = Duration::seconds(1);  // Interval to ask for (0: the server's default).
    Duration timeout = Duration::seconds(3);    // Timeout to ask for and judge by (0: the server's).
    std::string id;                             // Session id to ask for (empty: the server assigns one).
    std::string credential;                     // Sent in HELLO for the server's admission check (<= 255 bytes).
    std::string resume_token;                   // From the last WELCOME for this id (resume_token()): lets us replace
                                                // a connection of ours the server still holds (<= 64 bytes).
    Duration handshake_timeout = Duration::seconds(5);  // WELCOME must come within this.
    std::size_t max_body_size = kDefaultMaxBodySize;
    // With framed: RFC 6455 instead of lifeline's frames (see above).
    bool websocket = false;
    std::string websocket_host;        // The Host header ("gateway.example:443").
    std::string websocket_path = "/";  // The request target; id, token and resume are added to its query.
    std::uint64_t websocket_seed = 0;  // Seeds Sec-WebSocket-Key and the masking keys: give it entropy
                                       // (getrandom); the session reads no randomness itself.

    // Ranges; the message names the field.
    Result<void> validate() const;
};

class ClientSession {
public:
    enum class State : std::uint8_t { handshake, open, closed };

    // `config` must outlive the session and be valid. Framed: HELLO is queued.
    ClientSession(const ClientSessionConfig& config, Instant now);
    ~ClientSession();
    ClientSession(const ClientSession&) = delete;
    ClientSession& operator=(const ClientSession&) = delete;

    void receive(std::span<const std::uint8_t> bytes, Instant now);
    void handle_timeout(Instant now);
    // Errors: not open, or larger than config.max_body_size.
    Result<void> send(std::span<const std::uint8_t> payload);
    // With a CLOSE frame (framed), then `closed` with `reason`.
    void close(CloseCode code, std::string_view text, DisconnectReason reason);
    void abort(DisconnectReason reason, std::string_view message);
    void on_sent(Instant now);
    void on_local_stall(Instant now);
    // Keep PINGing but never convict the server again (a reader that stopped
    // reading on purpose cannot tell silence from its own deafness).
    void stop_judging();

    std::optional<Transmit> poll_transmit() { return outbox_.poll_transmit(); }
    std::optional<SessionEvent> poll_event() { return outbox_.poll_event(); }
    Instant next_timeout() const;

    State state() const { return state_; }
    // The id the server granted (empty before WELCOME, and in raw mode).
    const std::string& granted_id() const { return granted_id_; }
    // What the WELCOME issued for coming back (ClientSessionConfig::resume_token next time); "" if none.
    const std::string& resume_token() const { return resume_token_; }
    const LivenessMachine& liveness() const { return liveness_; }
    Duration timeout() const { return detector_.timeout(); }
    std::size_t pending_bytes() const { return outbox_.pending_bytes(); }

private:
    void handle_frame(const Frame& frame, Instant now);
    void handle_welcome(const Welcome& welcome, Instant now);
    void open(Duration interval, Duration timeout, Instant now);
    // What a CLOSE with lifeline's `code` from the server means for us.
    DisconnectReason close_reason(std::uint16_t code) const;
    void send_ping(const Ping& ping);
    void send_close(CloseCode code, std::string_view text);
    void control(const Frame& frame);
    void finish(DisconnectReason reason, std::string message);

    // The WebSocket wire (client_session_websocket.cpp).
    struct WebSocketState;
    void ws_start();
    void ws_receive(std::span<const std::uint8_t> bytes, Instant now);
    void ws_response(Instant now);
    void ws_frames(std::span<const std::uint8_t> input, Instant now);
    void ws_frame(ws::WsFrame& frame, Instant now);
    void ws_violation(std::uint16_t close_code, const std::string& message);
    void ws_control(ws::Opcode opcode, std::span<const std::uint8_t> payload);
    void ws_close(std::uint16_t websocket_code, std::string_view text);
    Result<void> ws_send(std::span<const std::uint8_t> payload);

    const ClientSessionConfig* config_;
    FixedTimeoutDetector detector_;
    LivenessMachine liveness_;
    FrameDecoder decoder_;
    SessionOutbox outbox_;
    std::string granted_id_;
    std::string resume_token_;
    std::unique_ptr<WebSocketState> ws_;  // config.websocket only.
    Instant started_at_;
    State state_ = State::handshake;
};

}  // namespace lifeline
