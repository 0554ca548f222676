// What a protocol session (ServerSession, ClientSession) hands back to the
// code that drives it: events for the application, and bytes to write.
//
// Sans-IO: nothing here touches a socket or a clock. Plain values; any thread
// may hold them (the session that made them is single-threaded).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

enum class SessionEventKind : std::uint8_t {
    hello,    // ServerSessionConfig::admission: a HELLO asks to be admitted (client_id as sent,
              // credential, resume_token, the interval and timeout it would get). admit() or reject().
    opened,   // The handshake is done (raw: the connection is open): interval, timeout, client_id.
    message,  // Application data: a DATA payload (raw: the bytes as they came).
    rtt,      // A PONG answered our latest PING: rtt.
    dead,     // The peer was silent past its timeout: reason, silence, budget, rtt. `closed` follows.
    error,    // Worth a log line (a protocol violation, too many PINGs): message. `closed` follows.
    closed,   // The session is over: reason, message. Exactly once, always the last event.
};

struct SessionEvent {
    SessionEvent() = default;
    explicit SessionEvent(SessionEventKind k) : kind(k) {}

    SessionEventKind kind = SessionEventKind::closed;
    DisconnectReason reason = DisconnectReason::local_close;  // dead, closed
    Duration interval;                                        // opened: the granted heartbeat interval
    Duration timeout;                                         // opened: the timeout this side judges by
    Duration silence;                                         // dead: since the last byte received
    Duration budget;                                          // dead: the timeout that applied
    Duration rtt;                                             // rtt: the sample; dead: the smoothed RTT (0: none)
    std::string client_id;                                    // opened
    std::string message;                                      // error, closed: why, for people
    std::vector<std::uint8_t> payload;                        // message
    bool text = false;                                        // message, WebSocket: a text message (UTF-8)
    std::string credential;                                   // hello
    std::string resume_token;                                 // hello
    std::string target;                                       // hello, WebSocket: the request target ("/live?id=x")
};

// Bytes to write to the peer, in order. `control` bytes (handshake, PING,
// PONG, CLOSE) come before any data a session holds, so a heartbeat never
// waits behind a large message; a transport with its own queue may let them
// jump ahead of data it still holds too. The span stays valid until the next
// call on the session.
struct Transmit {
    std::span<const std::uint8_t> bytes;
    bool control = false;
};

// Internal to the sessions: what a session has produced and not yet handed
// over. Empty, it owns no heap memory (an idle session costs 8 bytes here).
class SessionOutbox {
public:
    // Appends an encoded frame; the error is the encoder's (a field too long).
    Result<void> frame(const Frame& frame, bool control, std::size_t max_body_size);
    void bytes(std::span<const std::uint8_t> data);
    // Bytes that go with the control frames (ahead of data): a handshake reply, a WebSocket control frame.
    void control_bytes(std::span<const std::uint8_t> data);
    void event(SessionEvent event);

    std::optional<Transmit> poll_transmit();
    std::optional<SessionEvent> poll_event();
    // Control and data bytes not yet polled.
    std::size_t pending_bytes() const;

private:
    struct Pending {
        std::vector<std::uint8_t> control;
        std::vector<std::uint8_t> data;
        std::vector<std::uint8_t> polled;  // What the last poll_transmit() returned.
        std::vector<SessionEvent> events;
        std::size_t next_event = 0;
    };
    Pending& pending();
    void release_if_idle();

    std::unique_ptr<Pending> pending_;
};

}  // namespace lifeline
