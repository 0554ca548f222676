// The lifeline wire codec; docs/PROTOCOL.md is the contract this file implements.
//
// All multi-byte integers are big-endian ("network byte order", RFC 1700 / RFC
// 791 appendix B). Text fields are UTF-8 as RFC 3629 defines it: the decoder is
// strict because a lenient decoder is how overlong encodings smuggle bytes past
// later checks (RFC 3629 section 10).
#include "lifeline/engine/codec.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "lifeline/check.hpp"

namespace lifeline {

namespace {

// Fixed part of a HELLO/WELCOME body: version:u8 interval_ms:u32 timeout_ms:u32 id_len:u8.
constexpr std::size_t kHandshakeFixedSize = 1 + 4 + 4 + 1;
// With the optional fields after the id: token_len:u8 token, credential_len:u8 credential.
constexpr std::size_t kMaxHandshakeBody =
    kHandshakeFixedSize + kMaxIdSize + 1 + kMaxResumeTokenSize + 1 + kMaxCredentialSize;
constexpr std::size_t kPingBodySize = 8 + 8;
constexpr std::size_t kCloseFixedSize = 2;
// The length field counts the type byte, so a body can be at most this long.
constexpr std::size_t kMaxEncodableBody = std::numeric_limits<std::uint32_t>::max() - 1;

constexpr std::size_t kUtf8Valid = static_cast<std::size_t>(-1);

std::uint16_t load_u16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

std::uint32_t load_u32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

std::uint64_t load_u64(const std::uint8_t* p) { return (std::uint64_t{load_u32(p)} << 32) | load_u32(p + 4); }

void put_u8(std::vector<std::uint8_t>& out, std::uint8_t v) { out.push_back(v); }

void put_u16(std::vector<std::uint8_t>& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void put_bytes(std::vector<std::uint8_t>& out, const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    out.insert(out.end(), p, p + size);
}

// Offset of the first byte that breaks RFC 3629 section 4's UTF8-octets grammar,
// or kUtf8Valid. The grammar's explicit second-byte ranges are what exclude
// overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
// points above U+10FFFF (F4 90.., F5..FF).
std::size_t first_invalid_utf8(std::string_view text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char b = s[i];
        if (b < 0x80) {
            ++i;
            continue;
        }
        std::size_t tail = 0;
        unsigned char lo = 0x80;
        unsigned char hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            tail = 1;
        } else if (b == 0xE0) {
            tail = 2;
            lo = 0xA0;
        } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
            tail = 2;
        } else if (b == 0xED) {
            tail = 2;
            hi = 0x9F;
        } else if (b == 0xF0) {
            tail = 3;
            lo = 0x90;
        } else if (b >= 0xF1 && b <= 0xF3) {
            tail = 3;
        } else if (b == 0xF4) {
            tail = 3;
            hi = 0x8F;
        } else {
            return i;  // 80..C1 cannot start a sequence; F5..FF never appear.
        }
        if (i + 1 >= n || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (std::size_t k = 2; k <= tail; ++k) {
            if (i + k >= n || s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        }
        i += tail + 1;
    }
    return kUtf8Valid;
}

std::string hex_byte(unsigned value) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out = "0x";
    out += kDigits[(value >> 4) & 0xF];
    out += kDigits[value & 0xF];
    return out;
}

std::size_t body_size(const Frame& frame) {
    struct Visitor {
        std::size_t operator()(const Hello& f) const {
            std::size_t size = kHandshakeFixedSize + f.id.size();
            if (!f.resume_token.empty() || !f.credential.empty()) size += 1 + f.resume_token.size();
            if (!f.credential.empty()) size += 1 + f.credential.size();
            return size;
        }
        std::size_t operator()(const Welcome& f) const {
            return kHandshakeFixedSize + f.id.size() + (f.resume_token.empty() ? 0 : 1 + f.resume_token.size());
        }
        std::size_t operator()(const Ping&) const { return kPingBodySize; }
        std::size_t operator()(const Pong&) const { return kPingBodySize; }
        std::size_t operator()(const Data& f) const { return f.payload.size(); }
        std::size_t operator()(const Close& f) const { return kCloseFixedSize + f.reason.size(); }
    };
    return std::visit(Visitor{}, frame);
}

// Checks the text fields and the version of `frame` for append_frame.
Result<void> validate_fields(const Frame& frame) {
    const std::string_view name = to_string(frame_type(frame));
    auto check_text = [&](std::string_view field, std::string_view text, std::size_t limit) -> Result<void> {
        if (text.size() > limit) {
            return Error{std::string(name) + ": " + std::string(field) + " is " + std::to_string(text.size()) +
                         " bytes, more than the " + std::to_string(limit) + "-byte limit"};
        }
        const std::size_t bad = first_invalid_utf8(text);
        if (bad != kUtf8Valid) {
            return Error{std::string(name) + ": " + std::string(field) + " is not valid UTF-8 (byte " +
                         hex_byte(static_cast<unsigned char>(text[bad])) + " at offset " + std::to_string(bad) + ")"};
        }
        return {};
    };
    auto check_bytes = [&](std::string_view field, std::string_view bytes, std::size_t limit) -> Result<void> {
        if (bytes.size() <= limit) return {};
        return Error{std::string(name) + ": " + std::string(field) + " is " + std::to_string(bytes.size()) +
                     " bytes, more than the " + std::to_string(limit) + "-byte limit"};
    };
    auto check_handshake = [&](std::uint8_t version, const std::string& id, std::string_view token) -> Result<void> {
        if (version != kProtocolVersion) {
            return Error{std::string(name) + ": version " + std::to_string(version) + " is not the protocol version " +
                         std::to_string(kProtocolVersion)};
        }
        if (auto t = check_bytes("resume_token", token, kMaxResumeTokenSize); !t) return t;
        return check_text("id", id, kMaxIdSize);
    };
    if (const auto* hello = std::get_if<Hello>(&frame)) {
        if (auto c = check_bytes("credential", hello->credential, kMaxCredentialSize); !c) return c;
        return check_handshake(hello->version, hello->id, hello->resume_token);
    }
    if (const auto* welcome = std::get_if<Welcome>(&frame)) {
        return check_handshake(welcome->version, welcome->id, welcome->resume_token);
    }
    if (const auto* close = std::get_if<Close>(&frame)) {
        return check_text("reason", close->reason, kMaxCloseReasonSize);
    }
    return {};
}

DecodeError make_error(DecodeErrorKind kind, std::string detail) { return DecodeError{kind, std::move(detail)}; }

// The role rules, checked from the type byte alone so a forbidden frame is
// refused before its body is buffered. Before the first frame only the
// handshake opener is allowed (unexpected_first_frame); afterwards a handshake
// frame is never allowed again (unexpected_frame).
std::optional<DecodeError> check_role(DecoderRole role, FrameType type, bool first) {
    const std::string name(to_string(type));
    switch (role) {
        case DecoderRole::any:
            return std::nullopt;
        case DecoderRole::server:
            if (first && type != FrameType::hello) {
                return make_error(DecodeErrorKind::unexpected_first_frame,
                                  "first frame is " + name + "; a server expects HELLO first");
            }
            if (!first && (type == FrameType::hello || type == FrameType::welcome)) {
                return make_error(DecodeErrorKind::unexpected_frame,
                                  name +
                                      " after the handshake; a server accepts one HELLO and "
                                      "never a WELCOME");
            }
            return std::nullopt;
        case DecoderRole::client:
            if (first && type != FrameType::welcome && type != FrameType::close) {
                return make_error(DecodeErrorKind::unexpected_first_frame,
                                  "first frame is " + name + "; a client expects WELCOME or CLOSE first");
            }
            if (!first && (type == FrameType::hello || type == FrameType::welcome)) {
                return make_error(DecodeErrorKind::unexpected_frame,
                                  name +
                                      " after the handshake; a client accepts one WELCOME and "
                                      "never a HELLO");
            }
            return std::nullopt;
    }
    return std::nullopt;
}

// Body-size rules that the length field alone decides.
std::optional<DecodeError> check_body_size(FrameType type, std::size_t size) {
    const std::string name(to_string(type));
    switch (type) {
        case FrameType::hello:
        case FrameType::welcome:
            if (size < kHandshakeFixedSize || size > kMaxHandshakeBody) {
                return make_error(DecodeErrorKind::bad_body_size,
                                  name + " body is " + std::to_string(size) + " bytes; it must be 10 + id_len (+ " +
                                      "token and credential fields), 10.." + std::to_string(kMaxHandshakeBody));
            }
            return std::nullopt;
        case FrameType::ping:
        case FrameType::pong:
            if (size != kPingBodySize) {
                return make_error(DecodeErrorKind::bad_body_size,
                                  name + " body is " + std::to_string(size) + " bytes; it must be exactly 16");
            }
            return std::nullopt;
        case FrameType::close:
            if (size < kCloseFixedSize || size > kCloseFixedSize + kMaxCloseReasonSize) {
                return make_error(DecodeErrorKind::bad_body_size,
                                  name + " body is " + std::to_string(size) + " bytes; it must be 2 + reason (2..122)");
            }
            return std::nullopt;
        case FrameType::data:
            return std::nullopt;  // Any size up to the limit, including 0.
    }
    return std::nullopt;
}

bool is_known_type(std::uint8_t type) {
    return type >= static_cast<std::uint8_t>(FrameType::hello) && type <= static_cast<std::uint8_t>(FrameType::close);
}

std::optional<DecodeError> check_text_field(FrameType type, std::string_view field, std::string_view text) {
    const std::size_t bad = first_invalid_utf8(text);
    if (bad == kUtf8Valid) return std::nullopt;
    return make_error(DecodeErrorKind::bad_utf8,
                      std::string(to_string(type)) + " " + std::string(field) + " is not valid UTF-8 (byte " +
                          hex_byte(static_cast<unsigned char>(text[bad])) + " at offset " + std::to_string(bad) + ")");
}

// Decodes a body whose size already passed check_body_size. `body` may view the
// caller's input or the decoder's partial buffer; a Data result views it too.
std::variant<Frame, DecodeError> parse_body(FrameType type, std::span<const std::uint8_t> body) {
    switch (type) {
        case FrameType::hello:
        case FrameType::welcome: {
            const std::uint8_t version = body[0];
            if (version != kProtocolVersion) {
                return make_error(DecodeErrorKind::bad_version,
                                  std::string(to_string(type)) + " version " + std::to_string(version) +
                                      "; this decoder speaks version " + std::to_string(kProtocolVersion));
            }
            const std::size_t id_len = body[9];
            if (body.size() < kHandshakeFixedSize + id_len) {
                return make_error(DecodeErrorKind::bad_body_size,
                                  std::string(to_string(type)) + " body is " + std::to_string(body.size()) +
                                      " bytes but id_len " + std::to_string(id_len) + " needs " +
                                      std::to_string(kHandshakeFixedSize + id_len));
            }
            std::string id(reinterpret_cast<const char*>(body.data() + kHandshakeFixedSize), id_len);
            if (auto err = check_text_field(type, "id", id)) return std::move(*err);
            const std::uint32_t interval_ms = load_u32(body.data() + 1);
            const std::uint32_t timeout_ms = load_u32(body.data() + 5);
            // The optional fields: WELCOME may carry a token; HELLO a token, then a credential.
            std::span<const std::uint8_t> rest = body.subspan(kHandshakeFixedSize + id_len);
            std::string fields[2];
            bool present[2] = {false, false};
            const int field_count = type == FrameType::hello ? 2 : 1;
            static constexpr const char* kFieldNames[2] = {"resume_token", "credential"};
            static constexpr std::size_t kFieldLimits[2] = {kMaxResumeTokenSize, kMaxCredentialSize};
            for (int f = 0; f < field_count && !rest.empty(); ++f) {
                const std::size_t len = rest[0];
                if (len > kFieldLimits[f] || rest.size() < 1 + len) {
                    return make_error(DecodeErrorKind::bad_body_size,
                                      std::string(to_string(type)) + " " + kFieldNames[f] + " of " +
                                          std::to_string(len) + " bytes does not fit (at most " +
                                          std::to_string(kFieldLimits[f]) + ", " + std::to_string(rest.size() - 1) +
                                          " left in the body)");
                }
                fields[f].assign(reinterpret_cast<const char*>(rest.data() + 1), len);
                present[f] = true;
                rest = rest.subspan(1 + len);
            }
            // One encoding per frame (what the encoder writes): a field is
            // present only when it, or the credential after it, is not empty.
            const bool needless_token = present[0] && fields[0].empty() && !present[1];
            const bool needless_credential = present[1] && fields[1].empty();
            if (needless_token || needless_credential) {
                return make_error(DecodeErrorKind::bad_body_size,
                                  std::string(to_string(type)) + " carries an empty " +
                                      (needless_credential ? "credential" : "resume_token") +
                                      " field, which must be omitted");
            }
            if (!rest.empty()) {
                return make_error(DecodeErrorKind::bad_body_size, std::string(to_string(type)) + " has " +
                                                                      std::to_string(rest.size()) +
                                                                      " bytes after its last field");
            }
            if (type == FrameType::hello) {
                return Frame{
                    Hello{version, interval_ms, timeout_ms, std::move(id), std::move(fields[0]), std::move(fields[1])}};
            }
            return Frame{Welcome{version, interval_ms, timeout_ms, std::move(id), std::move(fields[0])}};
        }
        case FrameType::ping:
            return Frame{Ping{load_u64(body.data()), load_u64(body.data() + 8)}};
        case FrameType::pong:
            return Frame{Pong{load_u64(body.data()), load_u64(body.data() + 8)}};
        case FrameType::data:
            return Frame{Data{body}};
        case FrameType::close: {
            std::string reason(reinterpret_cast<const char*>(body.data() + kCloseFixedSize),
                               body.size() - kCloseFixedSize);
            if (auto err = check_text_field(type, "reason", reason)) return std::move(*err);
            // Unknown codes are accepted: a newer peer may send codes this
            // version does not name, and the connection closes either way.
            return Frame{Close{load_u16(body.data()), std::move(reason)}};
        }
    }
    assert(false && "parse_body called with an unchecked type");
    return make_error(DecodeErrorKind::unknown_type, "unreachable");
}

}  // namespace

std::string_view to_string(FrameType type) {
    switch (type) {
        case FrameType::hello:
            return "HELLO";
        case FrameType::welcome:
            return "WELCOME";
        case FrameType::ping:
            return "PING";
        case FrameType::pong:
            return "PONG";
        case FrameType::data:
            return "DATA";
        case FrameType::close:
            return "CLOSE";
    }
    return "UNKNOWN";
}

std::string_view to_string(DecodeErrorKind kind) {
    switch (kind) {
        case DecodeErrorKind::empty_frame:
            return "empty_frame";
        case DecodeErrorKind::frame_too_large:
            return "frame_too_large";
        case DecodeErrorKind::unknown_type:
            return "unknown_type";
        case DecodeErrorKind::bad_body_size:
            return "bad_body_size";
        case DecodeErrorKind::bad_version:
            return "bad_version";
        case DecodeErrorKind::bad_utf8:
            return "bad_utf8";
        case DecodeErrorKind::unexpected_first_frame:
            return "unexpected_first_frame";
        case DecodeErrorKind::unexpected_frame:
            return "unexpected_frame";
    }
    return "unknown_error";
}

FrameType frame_type(const Frame& frame) {
    // The variant's alternatives are declared in wire-type order, HELLO = 1.
    static_assert(std::is_same_v<std::variant_alternative_t<0, Frame>, Hello>);
    static_assert(std::is_same_v<std::variant_alternative_t<5, Frame>, Close>);
    return static_cast<FrameType>(frame.index() + 1);
}

std::size_t encoded_size(const Frame& frame) { return kFrameHeaderSize + body_size(frame); }

Result<void> append_frame(std::vector<std::uint8_t>& out, const Frame& frame, std::size_t max_body_size) {
    if (auto valid = validate_fields(frame); !valid) return valid;
    const std::size_t body = body_size(frame);
    if (body > max_body_size || body > kMaxEncodableBody) {
        return Error{std::string(to_string(frame_type(frame))) + ": body of " + std::to_string(body) +
                     " bytes exceeds the maximum of " + std::to_string(std::min(max_body_size, kMaxEncodableBody)) +
                     " bytes"};
    }
    // Every check is done: from here on nothing can fail, so `out` is only
    // touched when the whole frame is appended.
    out.reserve(out.size() + kFrameHeaderSize + body);
    put_u32(out, static_cast<std::uint32_t>(body + 1));
    put_u8(out, static_cast<std::uint8_t>(frame_type(frame)));
    struct Visitor {
        std::vector<std::uint8_t>& out;
        void handshake(std::uint8_t version, std::uint32_t interval_ms, std::uint32_t timeout_ms,
                       const std::string& id) const {
            put_u8(out, version);
            put_u32(out, interval_ms);
            put_u32(out, timeout_ms);
            field(id);
        }
        void field(const std::string& bytes) const {
            put_u8(out, static_cast<std::uint8_t>(bytes.size()));
            put_bytes(out, bytes.data(), bytes.size());
        }
        // The optional fields are left out when empty, so a plain HELLO/WELCOME
        // is byte for byte what it was before they existed.
        void operator()(const Hello& f) const {
            handshake(f.version, f.interval_ms, f.timeout_ms, f.id);
            if (!f.resume_token.empty() || !f.credential.empty()) field(f.resume_token);
            if (!f.credential.empty()) field(f.credential);
        }
        void operator()(const Welcome& f) const {
            handshake(f.version, f.interval_ms, f.timeout_ms, f.id);
            if (!f.resume_token.empty()) field(f.resume_token);
        }
        void operator()(const Ping& f) const {
            put_u64(out, f.seq);
            put_u64(out, f.sent_at);
        }
        void operator()(const Pong& f) const {
            put_u64(out, f.seq);
            put_u64(out, f.sent_at);
        }
        void operator()(const Data& f) const { put_bytes(out, f.payload.data(), f.payload.size()); }
        void operator()(const Close& f) const {
            put_u16(out, f.code);
            put_bytes(out, f.reason.data(), f.reason.size());
        }
    };
    std::visit(Visitor{out}, frame);
    return {};
}

bool is_valid_utf8(std::string_view bytes) { return first_invalid_utf8(bytes) == kUtf8Valid; }

std::string fit_close_reason(std::string_view text) {
    std::string reason(text.substr(0, kMaxCloseReasonSize));
    while (!reason.empty() && !is_valid_utf8(reason)) reason.pop_back();
    return reason;
}

FrameDecoder::FrameDecoder(DecoderRole role, DecoderLimits limits)
    : max_body_size_(static_cast<std::uint32_t>(limits.max_body_size)), role_(static_cast<std::uint32_t>(role) & 3u) {
    LIFELINE_CHECK(limits.max_body_size <= kMaxEncodableBody, "max_body_size fits the length field");
}

FrameDecoder::Step FrameDecoder::fail(DecodeError error) {
    failed_ = true;
    failure_kind_ = static_cast<std::uint32_t>(error.kind) & 15u;
    // Nothing can view the buffer any more (this call returns no frame), and a
    // failed decoder must not keep holding a partial frame's memory.
    partial_.reset();
    return Step{std::nullopt, std::move(error)};
}

std::optional<DecodeError> FrameDecoder::check_header(std::uint32_t length, std::uint8_t type_byte) const {
    if (length == 0) {
        return make_error(DecodeErrorKind::empty_frame, "frame length is 0; a frame has at least its type byte");
    }
    const std::uint32_t body = length - 1;
    if (body > max_body_size_) {
        return make_error(DecodeErrorKind::frame_too_large, "frame length " + std::to_string(length) + " gives a " +
                                                                std::to_string(body) + "-byte body, more than the " +
                                                                std::to_string(max_body_size_) + "-byte maximum");
    }
    if (!is_known_type(type_byte)) {
        return make_error(DecodeErrorKind::unknown_type, "unknown frame type " + hex_byte(type_byte));
    }
    const auto type = static_cast<FrameType>(type_byte);
    if (auto err = check_role(static_cast<DecoderRole>(role_), type, frames_decoded_ == 0)) return err;
    return check_body_size(type, body);
}

void FrameDecoder::buffer(std::span<const std::uint8_t> bytes, std::size_t frame_size) {
    if (!partial_) partial_ = std::make_unique<std::vector<std::uint8_t>>();
    std::vector<std::uint8_t>& partial = *partial_;
    LIFELINE_CHECK(partial.size() + bytes.size() <= frame_size, "a partial frame never grows past its announced size");
    // Grow geometrically but never past the frame being assembled, so the
    // buffer's capacity stays within header + max body even though a peer that
    // announces a large frame and then trickles it costs only what it sent.
    const std::size_t needed = partial.size() + bytes.size();
    if (needed > partial.capacity()) {
        partial.reserve(std::min(frame_size, std::max(needed, 2 * partial.capacity())));
    }
    partial.insert(partial.end(), bytes.begin(), bytes.end());
}

FrameDecoder::Step FrameDecoder::finish(FrameType type, std::span<const std::uint8_t> body) {
    auto parsed = parse_body(type, body);
    if (auto* err = std::get_if<DecodeError>(&parsed)) return fail(std::move(*err));
    if (frames_decoded_ < kMaxFramesCounted) ++frames_decoded_;
    return Step{std::move(std::get<Frame>(parsed)), std::nullopt};
}

FrameDecoder::Step FrameDecoder::next(std::span<const std::uint8_t>& input) {
    if (release_partial_on_next_call_) {
        // The previous call returned a frame parsed from partial_; a DATA
        // payload from it could view this memory until now. Free rather than
        // clear so an idle connection's decoder owns no heap memory.
        partial_.reset();
        release_partial_on_next_call_ = false;
    }
    if (failed_) {
        return Step{std::nullopt, make_error(static_cast<DecodeErrorKind>(failure_kind_),
                                             "decoder already failed (" +
                                                 std::string(to_string(static_cast<DecodeErrorKind>(failure_kind_))) +
                                                 "); no further frames")};
    }

    if (!partial_ || partial_->empty()) {
        if (input.empty()) return {};
        if (input.size() < kFrameHeaderSize) {
            buffer(input, kFrameHeaderSize);
            input = input.subspan(input.size());
            return {};
        }
        const std::uint32_t length = load_u32(input.data());
        if (auto err = check_header(length, input[4])) return fail(std::move(*err));
        const std::size_t frame_size = kFrameHeaderSize + (length - 1);
        if (input.size() >= frame_size) {
            // The common case: the whole frame is in the caller's bytes, parse in place.
            const auto body = input.subspan(kFrameHeaderSize, frame_size - kFrameHeaderSize);
            const auto type = static_cast<FrameType>(input[4]);
            input = input.subspan(frame_size);
            return finish(type, body);
        }
        buffer(input, frame_size);
        input = input.subspan(input.size());
        return {};
    }

    // Continue the partial frame: first complete and check the header, then the body.
    std::vector<std::uint8_t>& partial = *partial_;
    if (partial.size() < kFrameHeaderSize) {
        const std::size_t take = std::min(kFrameHeaderSize - partial.size(), input.size());
        buffer(input.first(take), kFrameHeaderSize);
        input = input.subspan(take);
        if (partial.size() < kFrameHeaderSize) return {};
        if (auto err = check_header(load_u32(partial.data()), partial[4])) {
            return fail(std::move(*err));
        }
    }
    const std::size_t frame_size = kFrameHeaderSize + (load_u32(partial.data()) - 1);
    const std::size_t take = std::min(frame_size - partial.size(), input.size());
    buffer(input.first(take), frame_size);
    input = input.subspan(take);
    if (partial.size() < frame_size) return {};
    const auto body = std::span<const std::uint8_t>(partial).subspan(kFrameHeaderSize);
    Step step = finish(static_cast<FrameType>(partial[4]), body);
    // A DATA payload in `step` views partial_: keep it until the next call.
    if (step.frame) release_partial_on_next_call_ = true;
    return step;
}

}  // namespace lifeline
