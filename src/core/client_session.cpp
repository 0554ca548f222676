#include "lifeline/engine/client_session.hpp"

#include <algorithm>

#include "core/client_websocket_state.hpp"
#include "lifeline/check.hpp"

namespace lifeline {

Result<void> ClientSessionConfig::validate() const {
    if (heartbeat < Duration::zero()) return Error{"heartbeat must be >= 0"};
    if (timeout < Duration::zero()) return Error{"timeout must be >= 0"};
    if (timeout > Duration::zero() && timeout <= heartbeat)
        return Error{"timeout (" + to_string(timeout) + ") must be longer than heartbeat (" + to_string(heartbeat) +
                     ")"};
    if (id.size() > kMaxIdSize || !is_valid_utf8(id)) return Error{"id must be at most 255 bytes of UTF-8"};
    if (credential.size() > kMaxCredentialSize) return Error{"credential must be at most 255 bytes"};
    if (resume_token.size() > kMaxResumeTokenSize) return Error{"resume_token must be at most 64 bytes"};
    if (handshake_timeout <= Duration::zero()) return Error{"handshake_timeout must be > 0"};
    if (max_body_size < 16 || max_body_size > (1u << 24)) return Error{"max_body_size must be 16 B..16 MiB"};
    if (websocket && !framed) return Error{"websocket needs framed (a protocol with heartbeats)"};
    if (websocket && (websocket_path.empty() || websocket_path.front() != '/'))
        return Error{"websocket_path must start with / (got \"" + websocket_path + "\")"};
    if (websocket && websocket_host.empty()) return Error{"websocket_host must name the server (the Host header)"};
    return {};
}

ClientSession::ClientSession(const ClientSessionConfig& config, Instant now)
    : config_(&config),
      detector_(Duration::infinite(), now),
      liveness_(LivenessConfig{config.heartbeat > Duration::zero() ? config.heartbeat : Duration::seconds(1), false},
                detector_, now),
      decoder_(DecoderRole::client, DecoderLimits{config.max_body_size}),
      started_at_(now) {
    if (!config.framed) {
        state_ = State::open;
        outbox_.event(SessionEvent(SessionEventKind::opened));
        return;
    }
    if (config.websocket) {
        ws_start();
        return;
    }
    control(Hello{kProtocolVersion, static_cast<std::uint32_t>(config.heartbeat.ms()),
                  static_cast<std::uint32_t>(config.timeout.ms()), config.id, config.resume_token, config.credential});
}

ClientSession::~ClientSession() = default;

Instant ClientSession::next_timeout() const {
    switch (state_) {
        case State::closed:
            return Instant::never();
        case State::handshake:
            return started_at_ + config_->handshake_timeout;
        case State::open:
            return config_->framed ? liveness_.next_deadline() : Instant::never();
    }
    return Instant::never();
}

void ClientSession::receive(std::span<const std::uint8_t> bytes, Instant now) {
    if (state_ == State::closed || bytes.empty()) return;
    if (!config_->framed) {
        liveness_.on_bytes_received(now);  // Never judged, but the kernel's verdicts report the silence.
        SessionEvent e(SessionEventKind::message);
        e.payload.assign(bytes.begin(), bytes.end());
        outbox_.event(std::move(e));
        return;
    }
    if (config_->websocket) {
        ws_receive(bytes, now);
        return;
    }
    if (state_ == State::open) liveness_.on_bytes_received(now);
    std::span<const std::uint8_t> input = bytes;
    while (state_ != State::closed) {
        FrameDecoder::Step step = decoder_.next(input);
        if (step.error) {
            finish(DisconnectReason::protocol_error,
                   std::string(to_string(step.error->kind)) + ": " + step.error->detail);
            return;
        }
        if (!step.frame) return;
        handle_frame(*step.frame, now);
    }
}

void ClientSession::handle_frame(const Frame& frame, Instant now) {
    if (const auto* welcome = std::get_if<Welcome>(&frame)) {
        handle_welcome(*welcome, now);
    } else if (const auto* pong = std::get_if<Pong>(&frame)) {
        if (auto rtt = liveness_.on_pong(now, *pong)) {
            SessionEvent e(SessionEventKind::rtt);
            e.rtt = *rtt;
            outbox_.event(std::move(e));
        }
    } else if (const auto* ping = std::get_if<Ping>(&frame)) {
        control(Pong{ping->seq, ping->sent_at});
    } else if (const auto* data = std::get_if<Data>(&frame)) {
        SessionEvent e(SessionEventKind::message);
        e.payload.assign(data->payload.begin(), data->payload.end());
        outbox_.event(std::move(e));
    } else if (const auto* close = std::get_if<Close>(&frame)) {
        finish(close_reason(close->code), "server sent CLOSE " + std::to_string(close->code) + ": " + close->reason);
    }
}

DisconnectReason ClientSession::close_reason(std::uint16_t code) const {
    switch (static_cast<CloseCode>(code)) {
        case CloseCode::session_replaced:
            return DisconnectReason::session_replaced;
        case CloseCode::protocol_error:
        case CloseCode::too_many_pings:
            return DisconnectReason::protocol_error;
        case CloseCode::id_in_use:
        case CloseCode::rejected:
            // Refused at the door: a claim on a live id, or the application said no.
            if (state_ == State::handshake) return DisconnectReason::rejected;
            break;
        default:
            if (state_ == State::handshake && code >= 1000) return DisconnectReason::rejected;
            break;
    }
    return DisconnectReason::peer_closed;
}

void ClientSession::handle_welcome(const Welcome& welcome, Instant now) {
    const Duration interval = Duration::milliseconds(welcome.interval_ms);
    const Duration granted_timeout = Duration::milliseconds(welcome.timeout_ms);
    if (interval <= Duration::zero() || granted_timeout <= interval) {
        finish(DisconnectReason::protocol_error, "WELCOME granted an unusable interval/timeout");
        return;
    }
    // The server clamps the timeout to protect itself, and judges us by what
    // it granted; how long we wait for the server is our own business, so a
    // longer request stands (docs/PROTOCOL.md, WELCOME). The interval is the
    // server's to grant: pinging faster than it allows is abuse.
    granted_id_ = welcome.id;
    resume_token_ = welcome.resume_token;
    open(interval, std::max(config_->timeout, granted_timeout), now);
}

void ClientSession::open(Duration interval, Duration timeout, Instant now) {
    detector_ = FixedTimeoutDetector(timeout, now);
    liveness_ = LivenessMachine(LivenessConfig{interval, true}, detector_, now);
    state_ = State::open;
    SessionEvent e(SessionEventKind::opened);
    e.interval = interval;
    e.timeout = timeout;
    e.client_id = granted_id_;
    outbox_.event(std::move(e));
}

void ClientSession::handle_timeout(Instant now) {
    if (state_ == State::closed || now < next_timeout()) return;
    if (state_ == State::handshake) {
        finish(DisconnectReason::unreachable, std::string(config_->websocket ? "no 101 (upgrade)" : "no WELCOME") +
                                                  " within " + to_string(config_->handshake_timeout));
        return;
    }
    const LivenessStep step = liveness_.on_timer(now);
    if (step.action == LivenessAction::send_ping) {
        send_ping(step.ping);
    } else if (step.action == LivenessAction::declare_dead) {
        SessionEvent e(SessionEventKind::dead);
        e.reason = DisconnectReason::heartbeat_timeout;
        e.silence = now - liveness_.last_received();
        e.budget = detector_.timeout();
        e.rtt = liveness_.rtt().has_sample() ? liveness_.rtt().smoothed() : Duration::zero();
        const std::string text = "nothing received for " + to_string(e.silence);
        outbox_.event(std::move(e));
        send_close(CloseCode::heartbeat_timeout, "server silent");
        finish(DisconnectReason::heartbeat_timeout, text);
    }
}

Result<void> ClientSession::send(std::span<const std::uint8_t> payload) {
    if (state_ != State::open) return make_error(Errc::not_open, "the session is not open");
    if (!config_->framed) {
        outbox_.bytes(payload);
        return {};
    }
    if (payload.size() > config_->max_body_size)
        return make_error(Errc::too_large, "message of " + std::to_string(payload.size()) +
                                               " bytes is larger than the " + std::to_string(config_->max_body_size) +
                                               "-byte limit");
    if (config_->websocket) return ws_send(payload);
    return outbox_.frame(Data{payload}, false, config_->max_body_size);
}

void ClientSession::close(CloseCode code, std::string_view text, DisconnectReason reason) {
    if (state_ == State::closed) return;
    if (config_->framed) send_close(code, text);
    finish(reason, std::string(text));
}

void ClientSession::abort(DisconnectReason reason, std::string_view message) {
    if (state_ != State::closed) finish(reason, std::string(message));
}

void ClientSession::on_sent(Instant now) {
    if (state_ == State::open) liveness_.on_bytes_sent(now);
}

void ClientSession::on_local_stall(Instant now) {
    if (state_ == State::open && config_->framed) liveness_.on_local_stall(now);
}

void ClientSession::stop_judging() {
    if (state_ != State::open || !config_->framed) return;
    // The last arrival stays, for whoever reads it (the kernel's verdicts).
    detector_ = FixedTimeoutDetector(Duration::infinite(), detector_.last_arrival());
}

void ClientSession::send_ping(const Ping& ping) {
    if (config_->websocket) {
        ws_control(ws::Opcode::ping, ws::ping_payload(ping));
        return;
    }
    control(ping);
}

void ClientSession::send_close(CloseCode code, std::string_view text) {
    if (!config_->websocket) {
        control(Close{static_cast<std::uint16_t>(code), fit_close_reason(text)});
    } else if (state_ == State::open) {  // Before the 101 there is no WebSocket to close.
        ws_close(websocket_close_code(static_cast<std::uint16_t>(code)), text);
    }
}

void ClientSession::control(const Frame& frame) {
    const Result<void> r = outbox_.frame(frame, true, config_->max_body_size);
    LIFELINE_CHECK(r.ok(), "a control frame always encodes (the config's id was validated)");
}

void ClientSession::finish(DisconnectReason reason, std::string message) {
    state_ = State::closed;
    SessionEvent e(SessionEventKind::closed);
    e.reason = reason;
    e.message = std::move(message);
    outbox_.event(std::move(e));
}

}  // namespace lifeline
