// ServerSession's WebSocket wire (ServerSessionConfig::websocket): the same
// rules as the framed protocol (handshake deadline, liveness from any byte,
// PINGs when quiet, heartbeat_timeout, the ping token bucket) carried by RFC
// 6455's upgrade and control frames instead of HELLO/WELCOME and PING/PONG.
// The server always pings (browsers never do, they only answer); there is no
// grant negotiation: the server's heartbeat and timeout apply.
#include <algorithm>

#include "lifeline/check.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/websocket.hpp"

namespace lifeline {

namespace {

// Longest upgrade request we read (slowloris gets the handshake deadline).
constexpr std::size_t kMaxUpgradeRequest = 8192;

std::span<const std::uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// A client id from the query (?id=...): printable, at most 255 bytes, or none.
std::string id_from(const ws::Upgrade& upgrade) {
    std::string id = upgrade.query("id");
    const bool printable = std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7F; });
    return printable && id.size() <= 255 ? id : std::string();
}

}  // namespace

struct ServerSession::WebSocketState {
    explicit WebSocketState(std::size_t max_payload) : decoder(max_payload), messages(max_payload) {}
    ws::WsFrameDecoder decoder;
    ws::WsMessageAssembler messages;
    std::string request;  // The upgrade request, until complete.
    std::string key;      // Sec-WebSocket-Key, until the 101 is sent.
};

// Here, where WebSocketState is complete.
ServerSession::Extras::Extras() = default;
ServerSession::Extras::~Extras() = default;

ServerSession::WebSocketState& ServerSession::ws_state() {
    Extras& x = extras();
    if (!x.websocket) x.websocket = std::make_unique<WebSocketState>(config_->max_body_size);
    return *x.websocket;
}

void ServerSession::ws_receive(std::span<const std::uint8_t> bytes, Instant now) {
    if (state_ == State::admitting) {
        hold(bytes);  // Frames pipelined after the upgrade: handled once admitted.
        return;
    }
    WebSocketState& w = ws_state();
    if (state_ == State::handshake) {
        w.request.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        const ws::UpgradeParse parse = ws::parse_upgrade(w.request, kMaxUpgradeRequest);
        if (parse.status != 0) {
            ws_refuse_upgrade(parse.status, parse.error);
            return;
        }
        if (!parse.upgrade) return;  // Incomplete: the handshake deadline bounds the wait.
        const std::string rest = w.request.substr(parse.consumed);
        w.request = {};
        ws_upgraded(*parse.upgrade, as_bytes(rest), now);  // `rest` outlives the call.
        return;
    }
    liveness_.on_bytes_received(now);
    ws_frames(bytes, now);
}

void ServerSession::ws_frames(std::span<const std::uint8_t> input, Instant now) {
    WebSocketState& w = ws_state();
    while (state_ == State::open) {
        ws::WsFrameDecoder::Step step = w.decoder.next(input);
        if (step.error) {
            ws_violation(step.error->close_code, step.error->detail);
            return;
        }
        if (!step.frame) return;
        ws_frame(*step.frame, now);
    }
}

void ServerSession::ws_upgraded(const ws::Upgrade& upgrade, std::span<const std::uint8_t> rest, Instant now) {
    // The credential: a bearer token (non-browser clients), else ?token=
    // (a browser's WebSocket cannot set headers).
    std::string credential = upgrade.query("token");
    if (const std::optional<std::string> auth = upgrade.header("authorization"); auth && auth->rfind("Bearer ", 0) == 0)
        credential = auth->substr(7);
    if (credential.size() > 255) {
        ws_refuse_upgrade(400, "a credential longer than 255 bytes");
        return;
    }
    ws_state().key = upgrade.key;
    if (std::string id = id_from(upgrade); !id.empty()) extras().chosen_id = std::move(id);
    liveness_ = LivenessMachine(LivenessConfig{config_->heartbeat, /*server_pings=*/true}, config_->timeout, now);
    if (!config_->admission) {
        ws_open_session("");
        if (rest.empty()) return;
        liveness_.on_bytes_received(now);
        ws_frames(rest, now);
        return;
    }
    state_ = State::admitting;
    SessionEvent e = ws_event(SessionEventKind::hello, std::string(chosen_id()));
    e.credential = std::move(credential);
    e.resume_token = ws::from_hex(upgrade.query("resume"));
    e.target = upgrade.target;
    outbox_.event(std::move(e));
    hold(rest);
}

void ServerSession::ws_open_session(std::string_view resume_token) {
    WebSocketState& w = ws_state();
    const std::string reply = ws::switching_protocols(w.key, resume_token);
    w.key = {};
    outbox_.control_bytes(as_bytes(reply));
    state_ = State::open;
    outbox_.event(ws_event(SessionEventKind::opened, client_id()));
}

// hello and opened: no negotiation, so both carry the server's own timings.
SessionEvent ServerSession::ws_event(SessionEventKind kind, std::string id) const {
    SessionEvent e(kind);
    e.interval = config_->heartbeat;
    e.timeout = config_->timeout;
    e.client_id = std::move(id);
    return e;
}

void ServerSession::ws_refuse_admission(std::uint16_t code, std::string_view text) {
    // No WebSocket yet: the refusal is HTTP, with lifeline's code in a header.
    const std::string header = "Lifeline-Close-Code: " + std::to_string(code) + "\r\n";
    outbox_.control_bytes(as_bytes(ws::http_error(403, text, header)));
}

void ServerSession::ws_refuse_upgrade(int status, const std::string& why) {
    count(&SessionCounters::protocol_errors);
    outbox_.control_bytes(as_bytes(ws::http_error(status, why)));
    SessionEvent e;
    e.kind = SessionEventKind::error;
    e.message = "bad WebSocket upgrade (HTTP " + std::to_string(status) + "): " + why;
    const std::string message = e.message;
    outbox_.event(std::move(e));
    finish(DisconnectReason::protocol_error, message);
}

void ServerSession::ws_frame(ws::WsFrame& frame, Instant now) {
    switch (frame.opcode) {
        case ws::Opcode::ping:
            if (!take_ping_token(now)) return;
            ws_control(ws::Opcode::pong, frame.payload);
            return;
        case ws::Opcode::pong:
            if (const std::optional<Pong> pong = ws::pong_of(frame.payload)) {
                if (auto rtt = liveness_.on_pong(now, *pong)) {
                    SessionEvent e;
                    e.kind = SessionEventKind::rtt;
                    e.rtt = *rtt;
                    outbox_.event(std::move(e));
                }
            }
            return;
        case ws::Opcode::close:
            ws_peer_close(frame.payload);
            return;
        case ws::Opcode::text:
        case ws::Opcode::binary:
        case ws::Opcode::continuation:
            ws_data(frame);
            return;
    }
}

void ServerSession::ws_data(ws::WsFrame& frame) {
    ws::WsMessageAssembler::Step step = ws_state().messages.add(frame);
    if (step.error) {
        ws_violation(step.error->close_code, step.error->detail);
        return;
    }
    if (!step.message) return;  // A fragment: more to come.
    SessionEvent e;
    e.kind = SessionEventKind::message;
    e.text = step.message->text;
    e.payload = std::move(step.message->payload);
    outbox_.event(std::move(e));
}

void ServerSession::ws_peer_close(std::span<const std::uint8_t> payload) {
    const ws::WsClose close = ws::parse_close(payload);
    if (close.error) {
        ws_violation(close.error->close_code, close.error->detail);
        return;
    }
    // Echo the close (RFC 6455 5.5.1), then the peer closes the TCP connection.
    std::vector<std::uint8_t> reply;
    ws::append_close(reply, close.code, "");
    outbox_.bytes(reply);  // Behind queued data: nothing may follow a close.
    finish(DisconnectReason::peer_closed, close.reason.empty() ? "close " + std::to_string(close.code) : close.reason);
}

void ServerSession::ws_violation(std::uint16_t close_code, const std::string& message) {
    count(&SessionCounters::protocol_errors);
    SessionEvent e;
    e.kind = SessionEventKind::error;
    e.message = message;
    outbox_.event(std::move(e));
    if (state_ == State::closed) return;
    std::vector<std::uint8_t> frame;
    ws::append_close(frame, close_code, message);
    outbox_.bytes(frame);  // Behind queued data: nothing may follow a close (RFC 6455 5.5.1).
    finish(DisconnectReason::protocol_error, message);
}

void ServerSession::ws_control(ws::Opcode opcode, std::span<const std::uint8_t> payload) {
    if (opcode == ws::Opcode::ping || opcode == ws::Opcode::pong) count(&SessionCounters::heartbeats_sent);
    std::vector<std::uint8_t> frame;
    ws::append_frame(frame, opcode, payload);
    outbox_.control_bytes(frame);
}

void ServerSession::ws_send_ping(const Ping& ping) { ws_control(ws::Opcode::ping, ws::ping_payload(ping)); }

void ServerSession::ws_close_frame(std::uint16_t code, std::string_view text) {
    if (state_ != State::open) return;  // Before the upgrade there is no WebSocket to close.
    std::vector<std::uint8_t> frame;
    ws::append_close(frame, websocket_close_code(code), text);
    outbox_.bytes(frame);  // Behind queued data: nothing may follow a close (RFC 6455 5.5.1).
}

Result<void> ServerSession::ws_send(std::span<const std::uint8_t> payload, bool text) {
    if (text && !ws::valid_utf8(payload)) return make_error(Errc::invalid_argument, "a text message must be UTF-8");
    std::vector<std::uint8_t> frame;
    ws::append_frame(frame, text ? ws::Opcode::text : ws::Opcode::binary, payload);
    outbox_.bytes(frame);
    return {};
}

}  // namespace lifeline
