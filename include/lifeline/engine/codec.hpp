// The lifeline wire codec: encoder and incremental, strict decoder for the
// framed protocol of docs/PROTOCOL.md (the public contract; keep both in step).
//
//   frame = length:u32be (bytes after this field, >= 1)  type:u8  body
//
// The decoder never buffers more than one frame (header + max body), never
// crashes on any input, and reports every violation as a typed DecodeError.
// Internal header (src/core); the runtime and the simulator use it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lifeline/result.hpp"

namespace lifeline {

inline constexpr std::uint8_t kProtocolVersion = 1;
inline constexpr std::size_t kFrameHeaderSize = 5;  // length:u32 + type:u8
// Bodies above this are a protocol error (frame_too_large).
inline constexpr std::size_t kDefaultMaxBodySize = 64 * 1024;
inline constexpr std::size_t kMaxIdSize = 255;  // id_len is a u8.
inline constexpr std::size_t kMaxCloseReasonSize = 120;
// Optional handshake fields after the id (docs/PROTOCOL.md, "Resume tokens
// and credentials"): opaque bytes, each with a u8 length.
inline constexpr std::size_t kMaxResumeTokenSize = 64;
inline constexpr std::size_t kMaxCredentialSize = 255;

enum class FrameType : std::uint8_t {
    hello = 0x01,
    welcome = 0x02,
    ping = 0x03,
    pong = 0x04,
    data = 0x05,
    close = 0x06,
};

std::string_view to_string(FrameType type);

// HELLO (client -> server, first frame). Zero durations mean "server default".
struct Hello {
    std::uint8_t version = kProtocolVersion;
    std::uint32_t interval_ms = 0;
    std::uint32_t timeout_ms = 0;
    std::string id;  // UTF-8, <= 255 bytes, may be empty.
    // Optional (both empty: the frame ends after the id, as before).
    std::string resume_token;  // From an earlier WELCOME for this id: "I am the one coming back". <= 64 bytes.
    std::string credential;    // For the application's admission check (e.g. an HMAC). <= 255 bytes.
    bool operator==(const Hello&) const = default;
};

// WELCOME (server -> client): the granted interval and timeout, the client's
// id, and (optionally) the resume token that lets it take its id back.
struct Welcome {
    std::uint8_t version = kProtocolVersion;
    std::uint32_t interval_ms = 0;
    std::uint32_t timeout_ms = 0;
    std::string id;
    std::string resume_token;  // Opaque, <= 64 bytes; empty: none issued.
    bool operator==(const Welcome&) const = default;
};

// PING and PONG carry the same 16 bytes; a PONG echoes the PING it answers.
// `sent_at` is opaque to the receiver.
struct Ping {
    std::uint64_t seq = 0;
    std::uint64_t sent_at = 0;
    bool operator==(const Ping&) const = default;
};
struct Pong {
    std::uint64_t seq = 0;
    std::uint64_t sent_at = 0;
    bool operator==(const Pong&) const = default;
};

// DATA: application payload. From the decoder, `payload` views bytes that stay
// valid until the next call on that decoder; to encode, it views caller bytes.
struct Data {
    std::span<const std::uint8_t> payload;
    bool operator==(const Data& o) const {
        return payload.size() == o.payload.size() && std::equal(payload.begin(), payload.end(), o.payload.begin());
    }
};

// CLOSE: the sender closes the connection after it.
struct Close {
    std::uint16_t code = 0;
    std::string reason;  // UTF-8, <= 120 bytes.
    bool operator==(const Close&) const = default;
};

// CLOSE codes (docs/PROTOCOL.md).
enum class CloseCode : std::uint16_t {
    normal = 0,
    shutdown = 1,
    protocol_error = 2,
    too_many_pings = 3,
    session_replaced = 4,
    handshake_timeout = 5,
    slow_consumer = 6,
    heartbeat_timeout = 7,
    id_in_use = 8,  // HELLO claimed a live client id without its resume token; the holder keeps it.
    rejected = 9,   // The application's admission check refused the HELLO.
};

using Frame = std::variant<Hello, Welcome, Ping, Pong, Data, Close>;

FrameType frame_type(const Frame& frame);

// Bytes the encoded frame occupies on the wire, header included.
std::size_t encoded_size(const Frame& frame);

// Appends the encoded frame to `out`. Fails (and appends nothing) when a field
// does not fit the protocol: id > 255 bytes, reason > 120 bytes, invalid UTF-8,
// a HELLO/WELCOME version other than kProtocolVersion, or a body larger than
// `max_body_size`, so the encoder never produces a frame the decoder rejects.
// The error message names the frame and the offending value.
Result<void> append_frame(std::vector<std::uint8_t>& out, const Frame& frame,
                          std::size_t max_body_size = kDefaultMaxBodySize);

enum class DecodeErrorKind : std::uint8_t {
    empty_frame,      // length field is 0 (a frame has at least its type byte).
    frame_too_large,  // body longer than the configured maximum.
    unknown_type,     // type byte is not one of the six.
    bad_body_size,    // body size wrong for the type (e.g. PING not 16 bytes).
    bad_version,      // HELLO/WELCOME version is not 1.
    bad_utf8,         // id or reason is not valid UTF-8.
    // Server side: first frame not HELLO; client side: not WELCOME or CLOSE.
    unexpected_first_frame,
    unexpected_frame,  // a frame that this side must never receive (e.g. a second HELLO).
};

std::string_view to_string(DecodeErrorKind kind);

struct DecodeError {
    DecodeErrorKind kind;
    std::string detail;  // Human-readable, names the frame type and the offending value.
};

// Which side's incoming stream the decoder reads; it decides the first-frame
// and direction rules.
enum class DecoderRole : std::uint8_t {
    server,  // Reads what a client sends: HELLO first, then PING, PONG, DATA, CLOSE.
    client,  // Reads what a server sends: WELCOME (or CLOSE) first, then PING, PONG, DATA, CLOSE.
    any,     // No ordering rules (tools, tests).
};

struct DecoderLimits {
    // Bodies above this are frame_too_large. Must be below 2^32 - 1 (the length
    // field counts the type byte too); a larger value is a programmer error.
    std::size_t max_body_size = kDefaultMaxBodySize;
};

// Incremental decoder: any split of the byte stream yields the same frames.
//
// Usage:
//   std::span<const std::uint8_t> input = bytes_just_read;
//   while (true) {
//       auto step = decoder.next(input);
//       if (!step.frame && !step.error) break;   // input consumed, need more bytes
//       if (step.error) { close(*step.error); break; }
//       handle(*step.frame);
//   }
//
// Frames that lie whole inside `input` are decoded in place (zero copy); only a
// partial frame at the end of `input` is copied into the decoder, and that
// buffer is released once the frame completes, so an idle connection's decoder
// owns no heap memory (the buffer is released at the start of the call after
// the one that returned the frame, since a DATA payload may still view it).
// After an error the decoder stays failed: later calls return an error of the
// same kind without consuming input. How much of `input` the failing call
// itself consumed is unspecified (the caller closes the connection anyway).
// The object is small (an idle connection holds one): keep it so. Not
// thread-safe: one decoder per connection, used by that connection's thread.
class FrameDecoder {
public:
    explicit FrameDecoder(DecoderRole role, DecoderLimits limits = {});

    struct Step {
        std::optional<Frame> frame;
        std::optional<DecodeError> error;
    };

    // Consumes bytes from the front of `input` and returns the next frame, an
    // error, or neither (all of `input` consumed; waiting for more bytes).
    Step next(std::span<const std::uint8_t>& input);

    // Bytes held for a partial frame (0 between frames, including right after a
    // frame completed from the buffer, whose memory is still held for a DATA
    // payload to view until the next call).
    std::size_t buffered_bytes() const { return release_partial_on_next_call_ || !partial_ ? 0 : partial_->size(); }
    // Heap bytes the partial-frame buffer owns: never more than header + max
    // body, and 0 once a buffered frame has been released. For memory
    // accounting and tests.
    std::size_t buffer_capacity() const { return partial_ ? partial_->capacity() : 0; }
    bool failed() const { return failed_; }
    // Frames decoded so far, up to kMaxFramesCounted (it stops counting there).
    std::uint64_t frames_decoded() const { return frames_decoded_; }
    static constexpr std::uint32_t kMaxFramesCounted = (1u << 24) - 1;

private:
    Step fail(DecodeError error);
    std::optional<DecodeError> check_header(std::uint32_t length, std::uint8_t type_byte) const;
    void buffer(std::span<const std::uint8_t> bytes, std::size_t frame_size);
    Step finish(FrameType type, std::span<const std::uint8_t> body);

    // Allocated only while a frame is split across reads: an idle connection's
    // decoder is 16 bytes and owns no heap memory.
    std::unique_ptr<std::vector<std::uint8_t>> partial_;
    std::uint32_t max_body_size_;
    // Packed into one word: every connection holds a decoder.
    std::uint32_t frames_decoded_ : 24 = 0;  // Saturates (kMaxFramesCounted): the rules only ask "any yet?".
    std::uint32_t role_ : 2;                 // DecoderRole
    std::uint32_t failure_kind_ : 4 = 0;     // DecodeErrorKind, once failed_
    bool failed_ : 1 = false;
    bool release_partial_on_next_call_ : 1 = false;
};

// True when `bytes` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view bytes);

// The longest prefix of `text` that a CLOSE frame can carry: at most
// kMaxCloseReasonSize bytes, cut back to whole UTF-8 characters.
std::string fit_close_reason(std::string_view text);

}  // namespace lifeline
