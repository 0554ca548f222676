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
#include <utility>
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
//
// It also keeps one word for its owner (park()), so that a word the owner
// needs only now and then costs it nothing of its own: while nothing is
// pending the outbox's word is that word (tagged in bit 0), and while
// something is, the word waits in the pending state. ServerSession keeps its
// extras there: an idle connection with an id pays one word for both
// (docs/BENCHMARKS.md, "Where an idle connection's bytes go").
class SessionOutbox {
public:
    SessionOutbox() = default;
    ~SessionOutbox();
    SessionOutbox(SessionOutbox&& other) noexcept : word_(std::exchange(other.word_, kNothing)) {}
    SessionOutbox& operator=(SessionOutbox&& other) noexcept;
    SessionOutbox(const SessionOutbox&) = delete;
    SessionOutbox& operator=(const SessionOutbox&) = delete;

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

    // The owner's word (0 until park()ed). Its bit 0 must be clear. The
    // outbox never reads it otherwise, and never frees what it names.
    std::uintptr_t parked() const {
        const Pending* p = pending_if_any();
        return p != nullptr ? p->parked : word_ & ~kParkedTag;
    }
    void park(std::uintptr_t word);

private:
    struct Pending {
        std::vector<std::uint8_t> control;
        std::vector<std::uint8_t> data;
        std::vector<std::uint8_t> polled;  // What the last poll_transmit() returned.
        std::vector<SessionEvent> events;
        std::size_t next_event = 0;
        std::uintptr_t parked = 0;  // The owner's word, while this exists.
    };
    // Bit 0 set: nothing pending, and the rest is the owner's word. Else a Pending.
    static constexpr std::uintptr_t kParkedTag = 1;
    static constexpr std::uintptr_t kNothing = kParkedTag;  // Nothing pending, nothing parked.
    Pending* pending_if_any() const { return (word_ & kParkedTag) != 0 ? nullptr : reinterpret_cast<Pending*>(word_); }
    Pending& pending();
    void release_if_idle();

    std::uintptr_t word_ = kNothing;
};

}  // namespace lifeline
