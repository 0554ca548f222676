// ClientSession's WebSocket wire (ClientSessionConfig::websocket): the framed
// protocol's rules carried by RFC 6455, as `lifeline connect ws://` and the
// WebSocket load generator speak it. The upgrade request stands for HELLO and
// the 101 for WELCOME; heartbeats are ping frames whose payload is lifeline's
// PING (so the server's pong gives an RTT), and every frame we send is masked
// (RFC 6455 5.3) with a key from the session's own generator, seeded by the
// driver: the session reads no clock and no randomness.
#include "core/client_websocket_state.hpp"
#include "lifeline/check.hpp"
#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/websocket.hpp"

namespace lifeline {

namespace {

// Longest 101 (or refusal) we read; a real one is a few hundred bytes.
constexpr std::size_t kMaxUpgradeResponse = 16384;

std::span<const std::uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): masking keys only need to be unpredictable to
// scripts on the path, and the seed comes from the OS.
std::uint64_t next_random(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

std::string request_target(const ClientSessionConfig& c) {
    std::string target = c.websocket_path;
    if (!c.id.empty()) target = ws::with_query(target, "id", c.id);
    if (!c.credential.empty()) target = ws::with_query(target, "token", c.credential);
    if (!c.resume_token.empty()) target = ws::with_query(target, "resume", ws::to_hex(c.resume_token));
    return target;
}

}  // namespace

ws::Mask ClientSession::WebSocketState::mask() {
    const std::uint64_t r = next_random(random);
    return {static_cast<std::uint8_t>(r), static_cast<std::uint8_t>(r >> 8), static_cast<std::uint8_t>(r >> 16),
            static_cast<std::uint8_t>(r >> 24)};
}

void ClientSession::ws_start() {
    ws_ = std::make_unique<WebSocketState>(config_->max_body_size, config_->websocket_seed);
    std::array<std::uint8_t, 16> nonce{};
    for (std::size_t i = 0; i < nonce.size(); i += 8) {
        const std::uint64_t r = next_random(ws_->random);
        for (std::size_t k = 0; k < 8; ++k) nonce[i + k] = static_cast<std::uint8_t>(r >> (8 * k));
    }
    ws_->key = ws::client_key(nonce);
    outbox_.control_bytes(as_bytes(ws::upgrade_request(config_->websocket_host, request_target(*config_), ws_->key)));
}

void ClientSession::ws_receive(std::span<const std::uint8_t> bytes, Instant now) {
    if (state_ == State::open) {
        liveness_.on_bytes_received(now);
        ws_frames(bytes, now);
        return;
    }
    ws_->response.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    ws_response(now);
}

void ClientSession::ws_response(Instant now) {
    const ws::UpgradeResponse r = ws::parse_upgrade_response(ws_->response, ws_->key, kMaxUpgradeResponse);
    if (!r.complete) return;  // The handshake deadline bounds the wait.
    if (!r.accepted) {
        // A refusal carries lifeline's reason (id_in_use, rejected) in a header.
        const std::string code = r.header("lifeline-close-code").value_or("");
        std::string message = "upgrade refused: " + r.error;
        if (!code.empty()) message += " (lifeline close code " + code + ")";
        finish(r.status == 403 ? DisconnectReason::rejected : DisconnectReason::protocol_error, message);
        return;
    }
    resume_token_ = ws::from_hex(r.header("lifeline-resume-token").value_or(""));
    granted_id_ = config_->id;
    const std::string rest = ws_->response.substr(r.consumed);
    ws_->response = {};
    ws_->key = {};
    open(config_->heartbeat > Duration::zero() ? config_->heartbeat : Duration::seconds(1),
         config_->timeout > Duration::zero() ? config_->timeout : Duration::seconds(3), now);
    if (!rest.empty()) ws_receive(as_bytes(rest), now);  // Frames right behind the 101.
}

void ClientSession::ws_frames(std::span<const std::uint8_t> input, Instant now) {
    while (state_ == State::open) {
        ws::WsFrameDecoder::Step step = ws_->decoder.next(input);
        if (step.error) {
            ws_violation(step.error->close_code, step.error->detail);
            return;
        }
        if (!step.frame) return;
        ws_frame(*step.frame, now);
    }
}

void ClientSession::ws_frame(ws::WsFrame& frame, Instant now) {
    switch (frame.opcode) {
        case ws::Opcode::ping:
            ws_control(ws::Opcode::pong, frame.payload);
            return;
        case ws::Opcode::pong:
            if (const std::optional<Pong> pong = ws::pong_of(frame.payload)) {
                if (auto rtt = liveness_.on_pong(now, *pong)) {
                    SessionEvent e(SessionEventKind::rtt);
                    e.rtt = *rtt;
                    outbox_.event(std::move(e));
                }
            }
            return;
        case ws::Opcode::close: {
            const ws::WsClose close = ws::parse_close(frame.payload);
            if (close.error) {
                ws_violation(close.error->close_code, close.error->detail);
                return;
            }
            ws_close(close.code, "");  // The echo (RFC 6455 5.5.1).
            finish(
                close_reason(lifeline_close_code(close.code)),
                "server sent close " + std::to_string(close.code) + (close.reason.empty() ? "" : ": ") + close.reason);
            return;
        }
        case ws::Opcode::text:
        case ws::Opcode::binary:
        case ws::Opcode::continuation: {
            ws::WsMessageAssembler::Step step = ws_->messages.add(frame);
            if (step.error) {
                ws_violation(step.error->close_code, step.error->detail);
            } else if (step.message) {
                SessionEvent e(SessionEventKind::message);
                e.text = step.message->text;
                e.payload = std::move(step.message->payload);
                outbox_.event(std::move(e));
            }
            return;
        }
    }
}

void ClientSession::ws_violation(std::uint16_t close_code, const std::string& message) {
    ws_close(close_code, message);
    finish(DisconnectReason::protocol_error, "server broke RFC 6455: " + message);
}

void ClientSession::ws_control(ws::Opcode opcode, std::span<const std::uint8_t> payload) {
    std::vector<std::uint8_t> frame;
    const ws::Mask mask = ws_->mask();
    ws::append_frame(frame, opcode, payload, true, &mask);
    outbox_.control_bytes(frame);
}

void ClientSession::ws_close(std::uint16_t websocket_code, std::string_view text) {
    std::vector<std::uint8_t> frame;
    const ws::Mask mask = ws_->mask();
    ws::append_close(frame, websocket_code, text, &mask);
    outbox_.bytes(frame);  // Behind queued data: nothing may follow a close (RFC 6455 5.5.1).
}

Result<void> ClientSession::ws_send(std::span<const std::uint8_t> payload) {
    std::vector<std::uint8_t> frame;
    const ws::Mask mask = ws_->mask();
    ws::append_frame(frame, ws::Opcode::binary, payload, true, &mask);
    outbox_.bytes(frame);
    return {};
}

}  // namespace lifeline
