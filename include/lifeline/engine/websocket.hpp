// RFC 6455 (WebSocket) for `--mode websocket`, sans-IO: the opening
// handshake (an HTTP/1.1 upgrade request in, a 101 response out) and the
// framing. ServerSession drives these when ServerSessionConfig::websocket is
// set; they are public for people who run their own WebSocket server and want
// only the pieces.
//
// Threads: none; a decoder belongs to one connection. Errors: a decoder error
// carries the close code (RFC 6455 7.4.1) the peer must get and why; parse
// errors carry the HTTP status to answer.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lifeline/engine/codec.hpp"

namespace lifeline::ws {

enum class Opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

// Close codes (RFC 6455 7.4.1). lifeline's own reasons are 4000 + its
// CloseCode (docs/PROTOCOL.md, "WebSocket").
inline constexpr std::uint16_t kNormalClosure = 1000;
inline constexpr std::uint16_t kGoingAway = 1001;
inline constexpr std::uint16_t kProtocolError = 1002;
inline constexpr std::uint16_t kInvalidPayload = 1007;  // A text message that is not UTF-8.
inline constexpr std::uint16_t kPolicyViolation = 1008;
inline constexpr std::uint16_t kMessageTooBig = 1009;
inline constexpr std::uint16_t kLifelineBase = 4000;

// Control frames carry at most this much (RFC 6455 5.5).
inline constexpr std::size_t kMaxControlPayload = 125;

struct WsFrame {
    bool fin = true;
    Opcode opcode = Opcode::binary;
    std::vector<std::uint8_t> payload;  // Unmasked.
};

struct WsError {
    std::uint16_t close_code = kProtocolError;
    std::string detail;
};

// Which end decodes: a server reads client frames, which must be masked; a
// client reads server frames, which must not be (RFC 6455 5.1).
enum class Role : std::uint8_t { server, client };

// Decodes the peer's frames. Frames of more than `max_payload` bytes are
// refused from their header, before any of the payload is buffered. After an
// error it stays failed.
class WsFrameDecoder {
public:
    explicit WsFrameDecoder(std::size_t max_payload, Role role = Role::server)
        : max_payload_(max_payload), role_(role) {}

    struct Step {
        std::optional<WsFrame> frame;
        std::optional<WsError> error;
    };
    // Consumes bytes from the front of `input`; a frame, an error, or neither
    // (all of `input` consumed, waiting for more).
    Step next(std::span<const std::uint8_t>& input);
    std::size_t buffered_bytes() const { return partial_.size(); }

private:
    Step fail(std::uint16_t code, std::string detail);
    std::size_t max_payload_;
    Role role_;
    std::vector<std::uint8_t> partial_;
    bool failed_ = false;
};

// A message: one data frame, or a fragmented message's frames joined.
struct WsMessage {
    bool text = false;
    std::vector<std::uint8_t> payload;
};

// Joins data frames into messages (RFC 6455 5.4): continuation frames only
// inside a fragmented message, at most `max_message` bytes in all, text
// messages valid UTF-8. Errors carry the close code.
class WsMessageAssembler {
public:
    explicit WsMessageAssembler(std::size_t max_message) : max_message_(max_message) {}
    struct Step {
        std::optional<WsMessage> message;
        std::optional<WsError> error;
    };
    // `frame` is a text, binary or continuation frame; its payload is taken.
    Step add(WsFrame& frame);

private:
    std::size_t max_message_;
    std::vector<std::uint8_t> message_;
    bool in_message_ = false;
    bool text_ = false;
};

// The body of a peer's CLOSE frame (RFC 6455 5.5.1, 7.4): no code is 1000
// (RFC 6455 7.1.5 reports 1005; lifeline treats it as a normal close); a
// 1-byte body, a code a peer may not send and a reason that is not UTF-8 are
// errors.
struct WsClose {
    std::uint16_t code = kNormalClosure;
    std::string reason;
    std::optional<WsError> error;
};
WsClose parse_close(std::span<const std::uint8_t> payload);

// A client's masking key (RFC 6455 5.3); a server frame has none.
using Mask = std::array<std::uint8_t, 4>;

// Appends one frame: a server's unmasked (`mask` null, as RFC 6455 5.1
// requires of servers), a client's masked with `*mask`.
void append_frame(std::vector<std::uint8_t>& out, Opcode opcode, std::span<const std::uint8_t> payload, bool fin = true,
                  const Mask* mask = nullptr);
// A CLOSE frame: the code, then `reason` cut to fit 125 bytes on a UTF-8 boundary.
void append_close(std::vector<std::uint8_t>& out, std::uint16_t code, std::string_view reason,
                  const Mask* mask = nullptr);

// lifeline's PING as a WebSocket ping payload (seq, then sent_at, 8 bytes
// each, big-endian), and the PONG an echo of one carries; nullopt for a
// payload that is not 16 bytes (an unsolicited pong, or a ping not ours).
std::vector<std::uint8_t> ping_payload(const Ping& ping);
std::optional<Pong> pong_of(std::span<const std::uint8_t> payload);

// Whether `bytes` are well-formed UTF-8 (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF).
bool valid_utf8(std::span<const std::uint8_t> bytes);

// A close code a peer may send (RFC 6455 7.4): 1000-1003, 1007-1011, 3000-4999.
bool valid_close_code(std::uint16_t code);

// The request line's target and the headers of an upgrade request.
struct Upgrade {
    std::string target;                                        // "/chat?id=device-7"
    std::string key;                                           // Sec-WebSocket-Key
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
    // The value of query parameter `name` in the target ("" when absent).
    std::string query(std::string_view name) const;
    // The value of header `name` (lower-case), or nullopt.
    std::optional<std::string> header(std::string_view name) const;
};

struct UpgradeParse {
    std::optional<Upgrade> upgrade;  // Complete and valid.
    std::size_t consumed = 0;        // Bytes of the request (through the blank line) when complete.
    int status = 0;                  // When invalid: the HTTP status to answer (400, 426, 431...).
    std::string error;               // When invalid: why.
};

// Parses an upgrade request from the start of `buffer`. Neither upgrade nor
// status set: incomplete, read more. Requests longer than `max_size` bytes
// are 431.
UpgradeParse parse_upgrade(std::string_view buffer, std::size_t max_size);

// base64(SHA-1(key + the RFC's GUID)): Sec-WebSocket-Accept (RFC 6455 4.2.2).
std::string accept_key(std::string_view key);
// "HTTP/1.1 101 Switching Protocols" with the accept key.
std::string switching_protocols(std::string_view key);
// An HTTP error response that closes the connection; `why` is the body.
// `extra_headers` are whole lines ("Name: value\r\n").
std::string http_error(int status, std::string_view why, std::string_view extra_headers = "");
// With a resume token: the 101 also carries `Lifeline-Resume-Token: <hex>`.
std::string switching_protocols(std::string_view key, std::string_view resume_token);
std::string to_hex(std::string_view bytes);

// The client's side of the handshake (RFC 6455 4.1, 4.2.2).
// Sec-WebSocket-Key: base64 of 16 random bytes.
std::string client_key(const std::array<std::uint8_t, 16>& nonce);
// `target` with `name=value` added to its query, the value percent-encoded
// (RFC 3986: everything but unreserved characters).
std::string with_query(std::string_view target, std::string_view name, std::string_view value);
// The upgrade request for `target` ("/path?query") on `host` ("example.com:8080").
std::string upgrade_request(std::string_view host, std::string_view target, std::string_view key);

struct UpgradeResponse {
    bool complete = false;     // The whole head (through the blank line) is there.
    bool accepted = false;     // 101 with Upgrade, Connection and the right Sec-WebSocket-Accept.
    int status = 0;            // The HTTP status (0: incomplete or not HTTP).
    std::size_t consumed = 0;  // Bytes of the head when complete; what follows is frames.
    std::string error;         // Not accepted: why (the status line, or what was wrong with the 101).
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
    std::optional<std::string> header(std::string_view name) const;
};
// Parses the server's answer to a request sent with `key`. Heads longer than
// `max_size` bytes are an error.
UpgradeResponse parse_upgrade_response(std::string_view buffer, std::string_view key, std::size_t max_size);
// "" when `hex` is not an even number of hex digits.
std::string from_hex(std::string_view hex);

}  // namespace lifeline::ws

namespace lifeline {

// The WebSocket close code for a lifeline CLOSE code: normal 1000, shutdown
// 1001, protocol_error 1002, lifeline's other codes 4000 + code, an
// application's own 3000-4999 as they are (1008 otherwise).
std::uint16_t websocket_close_code(std::uint16_t code);
// The other way, for a client: 4000 + code is lifeline's code, 1000 normal,
// 1001 shutdown, 1002, 1007 and 1009 protocol_error; anything else is kept
// as it is (an application's own code, or 1008).
std::uint16_t lifeline_close_code(std::uint16_t websocket_code);

}  // namespace lifeline
