// What the gateway API (lifeline/server.hpp) says about one connection: its
// handle, what its HELLO asked for, the admission verdict, send results and
// statistics. Plain values: copy them anywhere, from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>

#include "lifeline/time.hpp"

namespace lifeline {

// A connection of a Server: valid for the server's lifetime, never reused
// (a closed connection's handle just stops naming anything). `number` is the
// `conn` of its events; `loop` and `slot` say where it lives, so any thread
// can reach it without a lookup.
struct ConnectionId {
    std::uint64_t number = 0;
    std::uint32_t loop = 0;
    std::uint32_t slot = 0;
    bool operator==(const ConnectionId&) const = default;
    explicit operator bool() const { return number != 0; }
};

// A HELLO, for the application to admit or reject (ServerCallbacks::on_hello).
// The views are valid during the callback only.
struct HelloInfo {
    ConnectionId conn;
    std::string_view client_id;   // As the client chose it ("" = none: the server names it c<number>).
    std::string_view credential;  // Opaque bytes from HELLO (at most 255; "" = none), e.g. an HMAC.
    std::string_view peer;        // "198.18.0.2:40122"
    std::string_view target;      // WebSocket: the upgrade's request target ("/live?id=x&token=y"); else "".
    // Another open connection holds client_id right now: admitting this one
    // replaces it (it ends with session_replaced).
    bool id_in_use = false;
    // HELLO carried the resume token the holder was issued in its WELCOME:
    // proof that this is the same client coming back.
    bool resume_token_valid = false;
};

struct Admit {};
// Refused: the client gets CLOSE `code` (`text` cut to 120 bytes) and the
// connection ends with reason `rejected`. Codes below 1000 are lifeline's
// (docs/PROTOCOL.md); the application's own start at kFirstApplicationCloseCode.
struct Reject {
    std::uint16_t code = 9;  // CloseCode::rejected
    std::string text;
};
using Admission = std::variant<Admit, Reject>;

inline constexpr std::uint16_t kFirstApplicationCloseCode = 1000;

// What an empty on_hello does: admit, except a claim on a live id without
// its resume token, which is refused with CLOSE id_in_use (the holder keeps
// its connection).
Admission default_admission(const HelloInfo& hello);

// Server::send(): what happened to the bytes. Never blocks.
enum class SendStatus : std::uint8_t {
    sent,    // The kernel took all of it (epoll). An io_uring loop gives output to the
             // ring at the end of its turn, so there send() says `queued`.
    queued,  // Kept in the connection's output queue (or posted to its loop, from another thread).
    full,    // Dropped: more than the output budget is queued. on_writable says when to retry.
};

// Server::stats(): one connection, as its loop sees it now.
struct ConnectionStats {
    ConnectionId conn;
    std::string client_id;
    std::string peer;
    Duration rtt;        // Heartbeat RTT (smoothed, RFC 6298), else the kernel's.
    Duration timeout;    // What it is judged by.
    Instant last_heard;  // Last byte from the peer (the loop's clock).
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::size_t queued_bytes = 0;  // Output not yet taken by the kernel.
    bool open = false;             // Past the handshake (raw: always).
};

}  // namespace lifeline

template <>
struct std::hash<lifeline::ConnectionId> {
    std::size_t operator()(const lifeline::ConnectionId& c) const noexcept {
        return std::hash<std::uint64_t>{}(c.number);
    }
};
