// What lifeline reports about connections: one Event per happening, written by
// `lifeline serve`/`connect` as one JSON object per line (or text for people).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

enum class EventKind : std::uint8_t {
    listening,  // The server accepts on `message` (its address).
    connect,    // A TCP connection was accepted (server) or established (client).
    hello,      // Handshake done: `client_id`, `interval` and the `timeout` this side judges by.
    dead,       // The peer was declared gone: `reason`, `silence` since its last byte, the `budget`, last `rtt`.
    closed,     // The connection ended, exactly once per connection: `reason`, `duration`, bytes.
    error,      // Something was wrong: `message` says what (bad input, EMFILE, ...).
    stall,      // Our own loop was stalled for `silence`; peers were given a fresh grace period.
    rtt,        // Client: an RTT sample from a PONG.
    // Server: a client that chose an id went offline (once per session, after
    // its `closed`): `reason`, and the presence `epoch` that ended. A session
    // replaced by a newer one of the same id leaves presence alone (`message`
    // says "superseded"); its offline still names its own epoch.
    offline,
};
std::string_view to_string(EventKind kind);

struct Event {
    EventKind kind = EventKind::error;
    std::uint64_t conn = 0;  // Connection number within the process; 0 for process-wide events.
    std::string peer;        // "127.0.0.1:40122"
    std::string client_id;
    std::optional<DisconnectReason> reason;
    Duration silence;   // dead: since the last byte received; stall: how long
    Duration budget;    // dead: the timeout (or kernel budget) that applied
    Duration rtt;       // dead/closed: last smoothed RTT; rtt: the sample
    Duration duration;  // closed: the connection's age
    Duration interval;  // hello: granted heartbeat interval
    Duration timeout;   // hello: the timeout this side judges by (server: granted; client: max(asked, granted))
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t bytes_unsent = 0;  // closed: output still queued here, dropped unsent
    std::uint64_t epoch = 0;         // hello (server, chosen id) and offline: the presence epoch
    // closed: application bytes (DATA payloads; in raw mode every byte)
    // received, and handed over for sending (sent or not).
    std::uint64_t data_in = 0;
    std::uint64_t data_out = 0;
    std::string message;
};

// {"ts":"2026-11-22T04:20:31.123Z","event":"dead","conn":3,...}: only the fields that apply.
std::string to_json_line(const Event& event);
// "04:20:31.123 dead conn=3 peer=... reason=heartbeat_timeout silence=3.01s ..."
std::string to_text_line(const Event& event);

}  // namespace lifeline
