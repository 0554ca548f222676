// RFC 6455 framing (section 5) and UTF-8 checking for the WebSocket mode.
#include <algorithm>
#include <cstring>

#include "lifeline/engine/websocket.hpp"

namespace lifeline::ws {

namespace {

bool is_control(Opcode op) { return (static_cast<std::uint8_t>(op) & 0x08) != 0; }

bool known_opcode(std::uint8_t op) { return op <= 2 || (op >= 8 && op <= 10); }

// The header's size once its first two bytes are known (mask key included).
std::size_t header_size(std::uint8_t second) {
    const std::uint8_t len7 = second & 0x7F;
    const std::size_t extended = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    return 2 + extended + ((second & 0x80) != 0 ? 4 : 0);
}

std::uint64_t read_be(const std::uint8_t* p, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
    return v;
}

}  // namespace

WsFrameDecoder::Step WsFrameDecoder::fail(std::uint16_t code, std::string detail) {
    failed_ = true;
    partial_.clear();
    partial_.shrink_to_fit();
    Step s;
    s.error = WsError{code, std::move(detail)};
    return s;
}

WsFrameDecoder::Step WsFrameDecoder::next(std::span<const std::uint8_t>& input) {
    if (failed_) return Step{std::nullopt, WsError{kProtocolError, "the decoder already failed"}};
    // Gather the header first, then the payload, into partial_; input that
    // completes a frame is consumed only up to its end.
    const auto take = [&](std::size_t want) {
        const std::size_t n = std::min(want > partial_.size() ? want - partial_.size() : 0, input.size());
        partial_.insert(partial_.end(), input.begin(), input.begin() + static_cast<std::ptrdiff_t>(n));
        input = input.subspan(n);
        return partial_.size() >= want;
    };
    if (!take(2)) return {};
    const std::uint8_t b0 = partial_[0];
    const std::uint8_t b1 = partial_[1];
    if ((b0 & 0x70) != 0) return fail(kProtocolError, "reserved bits set without an extension");
    if (!known_opcode(b0 & 0x0F)) return fail(kProtocolError, "unknown opcode " + std::to_string(b0 & 0x0F));
    const auto opcode = static_cast<Opcode>(b0 & 0x0F);
    const bool fin = (b0 & 0x80) != 0;
    const bool masked = (b1 & 0x80) != 0;
    if (role_ == Role::server && !masked) return fail(kProtocolError, "a client frame without a mask (RFC 6455 5.1)");
    if (role_ == Role::client && masked) return fail(kProtocolError, "a server frame with a mask (RFC 6455 5.1)");
    const std::size_t header = header_size(b1);
    if (!take(header)) return {};
    const std::uint8_t len7 = b1 & 0x7F;
    std::uint64_t length = len7;
    if (len7 == 126) length = read_be(&partial_[2], 2);
    if (len7 == 127) length = read_be(&partial_[2], 8);
    if ((len7 == 126 && length < 126) || (len7 == 127 && length <= 0xFFFF))
        return fail(kProtocolError, "payload length not in its minimal encoding");
    if (len7 == 127 && (length >> 63) != 0) return fail(kProtocolError, "payload length with its top bit set");
    if (is_control(opcode)) {
        if (!fin) return fail(kProtocolError, "a fragmented control frame");
        if (length > kMaxControlPayload)
            return fail(kProtocolError, "a control frame of " + std::to_string(length) + " bytes (at most 125)");
    }
    if (length > max_payload_)
        return fail(kMessageTooBig, "a frame of " + std::to_string(length) + " bytes, more than the " +
                                        std::to_string(max_payload_) + "-byte limit");
    if (!take(header + static_cast<std::size_t>(length))) return {};
    WsFrame frame;
    frame.fin = fin;
    frame.opcode = opcode;
    frame.payload.assign(partial_.begin() + static_cast<std::ptrdiff_t>(header), partial_.end());
    if (masked) {
        const std::uint8_t* mask = &partial_[header - 4];
        for (std::size_t i = 0; i < frame.payload.size(); ++i) frame.payload[i] ^= mask[i % 4];
    }
    partial_ = {};  // An idle connection holds no buffer between frames.
    Step s;
    s.frame = std::move(frame);
    return s;
}

WsMessageAssembler::Step WsMessageAssembler::add(WsFrame& frame) {
    const auto fail = [&](std::uint16_t code, std::string detail) {
        message_ = {};
        in_message_ = false;
        return Step{std::nullopt, WsError{code, std::move(detail)}};
    };
    const bool continuation = frame.opcode == Opcode::continuation;
    if (continuation != in_message_)
        return fail(kProtocolError, continuation ? "a continuation frame outside a fragmented message"
                                                 : "a new message inside a fragmented one");
    if (!continuation) text_ = frame.opcode == Opcode::text;
    if (message_.size() + frame.payload.size() > max_message_)
        return fail(kMessageTooBig, "a message of more than " + std::to_string(max_message_) + " bytes");
    if (!frame.fin) {
        in_message_ = true;
        message_.insert(message_.end(), frame.payload.begin(), frame.payload.end());
        return {};
    }
    WsMessage m;
    m.text = text_;
    if (in_message_) {
        message_.insert(message_.end(), frame.payload.begin(), frame.payload.end());
        m.payload = std::move(message_);
        message_ = {};
        in_message_ = false;
    } else {
        m.payload = std::move(frame.payload);
    }
    if (m.text && !valid_utf8(m.payload)) return fail(kInvalidPayload, "a text message that is not valid UTF-8");
    return Step{std::move(m), std::nullopt};
}

WsClose parse_close(std::span<const std::uint8_t> payload) {
    WsClose c;
    if (payload.empty()) return c;
    if (payload.size() == 1) {
        c.error = WsError{kProtocolError, "a close frame with a 1-byte body"};
        return c;
    }
    c.code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
    if (!valid_close_code(c.code)) {
        c.error = WsError{kProtocolError, "close code " + std::to_string(c.code) + " is not one a peer may send"};
    } else if (!valid_utf8(payload.subspan(2))) {
        c.error = WsError{kInvalidPayload, "a close reason that is not valid UTF-8"};
    } else {
        c.reason.assign(payload.begin() + 2, payload.end());
    }
    return c;
}

void append_frame(std::vector<std::uint8_t>& out, Opcode opcode, std::span<const std::uint8_t> payload, bool fin,
                  const Mask* mask) {
    out.push_back(static_cast<std::uint8_t>((fin ? 0x80 : 0) | static_cast<std::uint8_t>(opcode)));
    const std::size_t n = payload.size();
    const std::uint8_t mask_bit = mask != nullptr ? 0x80 : 0;
    if (n < 126) {
        out.push_back(static_cast<std::uint8_t>(mask_bit | n));
    } else if (n <= 0xFFFF) {
        out.push_back(mask_bit | 126);
        out.push_back(static_cast<std::uint8_t>(n >> 8));
        out.push_back(static_cast<std::uint8_t>(n));
    } else {
        out.push_back(mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8)
            out.push_back(static_cast<std::uint8_t>(std::uint64_t{n} >> shift));
    }
    if (mask == nullptr) {
        out.insert(out.end(), payload.begin(), payload.end());
        return;
    }
    out.insert(out.end(), mask->begin(), mask->end());
    for (std::size_t i = 0; i < n; ++i) out.push_back(payload[i] ^ (*mask)[i % 4]);
}

void append_close(std::vector<std::uint8_t>& out, std::uint16_t code, std::string_view reason, const Mask* mask) {
    // A reason that is not UTF-8 would make the peer fail the connection (1007): send none.
    if (!valid_utf8({reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size()})) reason = {};
    std::size_t keep = std::min(reason.size(), kMaxControlPayload - 2);
    // Cut on a character boundary: never in the middle of a UTF-8 sequence.
    while (keep > 0 && keep < reason.size() && (static_cast<std::uint8_t>(reason[keep]) & 0xC0) == 0x80) --keep;
    std::vector<std::uint8_t> body = {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code)};
    body.insert(body.end(), reason.begin(), reason.begin() + static_cast<std::ptrdiff_t>(keep));
    append_frame(out, Opcode::close, body, true, mask);
}

std::vector<std::uint8_t> ping_payload(const Ping& ping) {
    std::vector<std::uint8_t> out;
    for (std::uint64_t v : {ping.seq, ping.sent_at}) {
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
    }
    return out;
}

std::optional<Pong> pong_of(std::span<const std::uint8_t> payload) {
    if (payload.size() != 16) return std::nullopt;
    return Pong{read_be(payload.data(), 8), read_be(payload.data() + 8, 8)};
}

bool valid_utf8(std::span<const std::uint8_t> s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const std::uint8_t c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        int extra = 0;
        std::uint32_t cp = 0;
        std::uint32_t min = 0;
        if ((c & 0xE0) == 0xC0) {
            extra = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + static_cast<std::size_t>(extra) >= s.size()) return false;  // Cut short.
        for (int k = 1; k <= extra; ++k) {
            const std::uint8_t cc = s[i + static_cast<std::size_t>(k)];
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += 1 + static_cast<std::size_t>(extra);
    }
    return true;
}

bool valid_close_code(std::uint16_t code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
}

}  // namespace lifeline::ws

namespace lifeline {

std::uint16_t websocket_close_code(std::uint16_t code) {
    switch (static_cast<CloseCode>(code)) {
        case CloseCode::normal:
            return ws::kNormalClosure;
        case CloseCode::shutdown:
            return ws::kGoingAway;
        case CloseCode::protocol_error:
            return ws::kProtocolError;
        default:
            break;
    }
    if (code < 1000) return static_cast<std::uint16_t>(ws::kLifelineBase + code);
    // An application's own codes: the WebSocket range for them, else "policy".
    return code >= 3000 && code <= 4999 ? code : ws::kPolicyViolation;
}

std::uint16_t lifeline_close_code(std::uint16_t websocket_code) {
    switch (websocket_code) {
        case ws::kNormalClosure:
            return static_cast<std::uint16_t>(CloseCode::normal);
        case ws::kGoingAway:
            return static_cast<std::uint16_t>(CloseCode::shutdown);
        case ws::kProtocolError:
        case ws::kInvalidPayload:
        case ws::kMessageTooBig:
            return static_cast<std::uint16_t>(CloseCode::protocol_error);
        default:
            break;
    }
    if (websocket_code >= ws::kLifelineBase && websocket_code < ws::kLifelineBase + 1000)
        return static_cast<std::uint16_t>(websocket_code - ws::kLifelineBase);
    return websocket_code;
}

}  // namespace lifeline
