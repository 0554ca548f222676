#include "lifeline/engine/server_session.hpp"

#include <algorithm>
#include <limits>

#include "lifeline/check.hpp"
#include "lifeline/engine/session_directory.hpp"
#include "lifeline/engine/websocket.hpp"

namespace lifeline {

namespace {

// A raw connection without an idle timeout, and a framed one before its
// HELLO, have no liveness deadline of their own.
Duration initial_timeout(const ServerSessionConfig& c) {
    return !c.framed && c.idle_timeout > Duration::zero() ? c.idle_timeout : Duration::infinite();
}

}  // namespace

Result<void> ServerSessionConfig::validate() const {
    if (heartbeat <= Duration::zero()) return Error{"heartbeat must be > 0"};
    if (timeout <= heartbeat)
        return Error{"timeout (" + to_string(timeout) + ") must be longer than heartbeat (" + to_string(heartbeat) +
                     "): a healthy idle peer would be convicted between two heartbeats"};
    if (min_interval <= Duration::zero() || min_interval > heartbeat)
        return Error{"min_interval (" + to_string(min_interval) + ") must be > 0 and <= heartbeat (" +
                     to_string(heartbeat) + ")"};
    if (max_timeout < timeout) return Error{"max_timeout must be >= timeout"};
    if (min_interval * 2 > max_timeout)
        return Error{"min_interval (" + to_string(min_interval) + ") must be at most half of max_timeout (" +
                     to_string(max_timeout) + ")"};
    if (handshake_timeout <= Duration::zero()) return Error{"handshake_timeout must be > 0"};
    if (idle_timeout < Duration::zero()) return Error{"idle_timeout must be >= 0"};
    if (max_body_size < 16 || max_body_size > (1u << 24)) return Error{"max_body_size must be 16 B..16 MiB"};
    if (websocket && !framed) return Error{"websocket needs framed (it is a protocol, not raw TCP)"};
    return {};
}

ServerSession::ServerSession(const ServerSessionConfig& config, std::uint64_t number, Instant now)
    : config_(&config),
      liveness_(LivenessConfig{config.heartbeat, false}, initial_timeout(config), now),
      decoder_(DecoderRole::server, DecoderLimits{config.max_body_size}),
      accepted_at_(now),
      number_(number) {
    if (!config.framed) {
        state_ = State::open;
        SessionEvent e;
        e.kind = SessionEventKind::opened;
        e.timeout = config.idle_timeout;
        outbox_.event(std::move(e));
    }
}

ServerSession::~ServerSession() { delete extras_if_any(); }

std::string_view ServerSession::chosen_id() const {
    if (const std::uint8_t* stored = stored_id()) return stored_id_text(stored);
    const Extras* x = extras_if_any();
    return x != nullptr ? std::string_view(x->chosen_id) : std::string_view();
}

std::string ServerSession::client_id() const {
    if (!config_->framed) return {};  // Raw: no protocol, no ids.
    if (const std::string_view chosen = chosen_id(); !chosen.empty()) return std::string(chosen);
    return state_ == State::handshake ? std::string() : "c" + std::to_string(number_);
}

void ServerSession::use_stored_id(const std::uint8_t* stored) {
    LIFELINE_CHECK(stored != nullptr && stored_id_text(stored) == chosen_id(), "the owner stores the id chosen");
    store_id(stored);
}

void ServerSession::forget_stored_id() {
    if ((outbox_.parked() & kStoredIdTag) != 0) {
        outbox_.park(0);
    } else if (Extras* x = extras_if_any()) {
        x->stored_id = nullptr;
    }
}

ServerSession::Extras& ServerSession::extras() {
    if (Extras* x = extras_if_any()) return *x;
    const std::uint8_t* stored = stored_id();
    auto* x = new Extras();
    x->stored_id = stored;
    outbox_.park(reinterpret_cast<std::uintptr_t>(x));
    return *x;
}

const std::uint8_t* ServerSession::stored_id() const {
    const std::uintptr_t word = outbox_.parked();
    if ((word & kStoredIdTag) != 0) return reinterpret_cast<const std::uint8_t*>(word & ~kStoredIdTag);
    const Extras* x = extras_if_any();
    return x != nullptr ? x->stored_id : nullptr;
}

void ServerSession::store_id(const std::uint8_t* stored) {
    const auto word = reinterpret_cast<std::uintptr_t>(stored);
    LIFELINE_CHECK((word & 3) == 0, "a stored id is aligned (bits 0 and 1 tag the outbox's parked word)");
    Extras* x = extras_if_any();
    if (x != nullptr && (x->websocket || !x->held.empty() || x->owner_data != nullptr)) {
        x->stored_id = stored;
        std::string().swap(x->chosen_id);
        return;
    }
    delete x;
    outbox_.park(word | kStoredIdTag);
}

Instant ServerSession::next_timeout() const {
    switch (state_) {
        case State::closed:
            return Instant::never();
        case State::handshake:
        case State::admitting:  // The application decides within the same deadline.
            return accepted_at_ + config_->handshake_timeout;
        case State::open:
            break;
    }
    if (!config_->framed && config_->idle_timeout <= Duration::zero()) return Instant::never();
    return liveness_.next_deadline();
}

void ServerSession::count(std::atomic<std::uint64_t> SessionCounters::*counter) const {
    if (config_->counters) (config_->counters->*counter).fetch_add(1, std::memory_order_relaxed);
}

void ServerSession::receive(std::span<const std::uint8_t> bytes, Instant now) {
    if (state_ == State::closed || bytes.empty()) return;
    if (config_->websocket) {
        ws_receive(bytes, now);
        return;
    }
    if (!config_->framed) {
        liveness_.on_bytes_received(now);
        SessionEvent e;
        e.kind = SessionEventKind::message;
        e.payload.assign(bytes.begin(), bytes.end());
        outbox_.event(std::move(e));
        return;
    }
    // Every byte is liveness, even part of a frame; the handshake has its own deadline.
    if (state_ == State::open) liveness_.on_bytes_received(now);
    std::span<const std::uint8_t> input = bytes;
    while (state_ != State::closed) {
        if (state_ == State::admitting) {
            hold(input);  // After the HELLO: handled once admitted.
            return;
        }
        FrameDecoder::Step step = decoder_.next(input);
        if (step.error) {
            protocol_violation(CloseCode::protocol_error,
                               std::string(to_string(step.error->kind)) + ": " + step.error->detail);
            return;
        }
        if (!step.frame) return;
        handle_frame(*step.frame, now);
    }
}

void ServerSession::hold(std::span<const std::uint8_t> bytes) {
    if (bytes.empty()) return;
    std::vector<std::uint8_t>& held = extras().held;
    // One largest frame: what a pipelining client may fairly have in flight.
    // (A WebSocket frame's header is up to 14 bytes, a lifeline frame's 5.)
    const std::size_t limit = (config_->websocket ? 14 : 5) + config_->max_body_size;
    if (held.size() + bytes.size() > limit) {
        protocol_violation(CloseCode::protocol_error,
                           "sent more than " + std::to_string(limit) + " bytes after its HELLO before being admitted");
        return;
    }
    held.insert(held.end(), bytes.begin(), bytes.end());
}

void ServerSession::handle_frame(const Frame& frame, Instant now) {
    if (const auto* hello = std::get_if<Hello>(&frame)) {
        handle_hello(*hello, now);
    } else if (const auto* ping = std::get_if<Ping>(&frame)) {
        handle_ping(*ping, now);
    } else if (const auto* pong = std::get_if<Pong>(&frame)) {
        if (auto rtt = liveness_.on_pong(now, *pong)) {
            SessionEvent e;
            e.kind = SessionEventKind::rtt;
            e.rtt = *rtt;
            outbox_.event(std::move(e));
        }
    } else if (const auto* data = std::get_if<Data>(&frame)) {
        SessionEvent e;
        e.kind = SessionEventKind::message;
        e.payload.assign(data->payload.begin(), data->payload.end());
        outbox_.event(std::move(e));
    } else if (const auto* close = std::get_if<Close>(&frame)) {
        finish(DisconnectReason::peer_closed, close->reason);
    }
    // WELCOME never gets here: the server-role decoder rejects it.
}

void ServerSession::handle_hello(const Hello& hello, Instant now) {
    const ServerSessionConfig& c = *config_;
    // Grant what was asked within the server's limits; 0 means "your default".
    Duration interval = hello.interval_ms == 0 ? c.heartbeat : Duration::milliseconds(hello.interval_ms);
    interval = std::clamp(interval, c.min_interval, c.max_timeout / 2);
    Duration timeout = hello.timeout_ms == 0 ? c.timeout : Duration::milliseconds(hello.timeout_ms);
    // A timeout must leave room for at least two heartbeats and the round trips between them.
    timeout = std::clamp(timeout, interval * 2, c.max_timeout);
    liveness_ = LivenessMachine(LivenessConfig{interval, c.server_pings}, timeout, now);
    if (!hello.id.empty()) extras().chosen_id = hello.id;
    if (!c.admission) {
        open_session("");
        return;
    }
    state_ = State::admitting;
    SessionEvent e;
    e.kind = SessionEventKind::hello;
    e.interval = interval;
    e.timeout = timeout;
    e.client_id = hello.id;
    e.resume_token = hello.resume_token;
    e.credential = hello.credential;
    outbox_.event(std::move(e));
}

void ServerSession::open_session(std::string_view resume_token) {
    state_ = State::open;
    const Duration interval = liveness_.interval();
    const Duration timeout = liveness_.timeout();
    control(Welcome{kProtocolVersion, static_cast<std::uint32_t>(interval.ms()),
                    static_cast<std::uint32_t>(timeout.ms()), client_id(), std::string(resume_token)});
    SessionEvent e;
    e.kind = SessionEventKind::opened;
    e.interval = interval;
    e.timeout = timeout;
    e.client_id = client_id();
    outbox_.event(std::move(e));
}

Result<void> ServerSession::admit(std::string_view resume_token, Instant now) {
    if (state_ != State::admitting) return make_error(Errc::not_open, "the session is not waiting for admission");
    if (resume_token.size() > kMaxResumeTokenSize)
        return make_error(Errc::too_large, "resume_token is " + std::to_string(resume_token.size()) +
                                               " bytes, more than " + std::to_string(kMaxResumeTokenSize));
    // Liveness is judged from the WELCOME: the client heard nothing before it.
    // WebSocket clients (browsers) never ping: the server always does.
    liveness_ = LivenessMachine(LivenessConfig{liveness_.interval(), config_->server_pings || config_->websocket},
                                liveness_.timeout(), now);
    if (config_->websocket) {
        ws_open_session(resume_token);
    } else {
        open_session(resume_token);
    }
    if (Extras* x = extras_if_any(); x != nullptr && !x->held.empty()) {
        const std::vector<std::uint8_t> held = std::move(x->held);
        x->held = {};
        receive(held, now);
    }
    return {};
}

void ServerSession::reject(std::uint16_t code, std::string_view text) {
    if (state_ != State::admitting) return;
    if (Extras* x = extras_if_any()) x->held = {};  // A refused client's pipelined frames are never read.
    std::string why = "rejected: ";
    why += text;
    if (config_->websocket) {
        ws_refuse_admission(code, text);
        finish(DisconnectReason::rejected, why);
        return;
    }
    finish_with_close(code, text, DisconnectReason::rejected, why);
}

void ServerSession::handle_ping(const Ping& ping, Instant now) {
    if (take_ping_token(now)) control(Pong{ping.seq, ping.sent_at});
}

bool ServerSession::take_ping_token(Instant now) {
    count(&SessionCounters::pings_received);
    // Abuse protection (gRPC's too_many_pings, as a token bucket): a PING costs
    // a token; tokens come back at the fastest rate we allow, up to a small
    // burst. Refills are computed from elapsed time, so PINGs that queued up
    // while our loop was busy are paid for by the time that passed, and a
    // detected stall refills the bucket outright (on_local_stall).
    // 32-bit milliseconds since accept, wrapping: differences stay right for
    // gaps under 49 days, however old the connection is.
    const auto now_ms = static_cast<std::uint32_t>((now - accepted_at_).ms());
    const auto refill_ms = static_cast<std::uint32_t>(std::max<std::int64_t>(1, config_->min_interval.ms()));
    if (!pinged_) {
        pinged_ = true;
        last_ping_ms_ = now_ms;
    }
    const std::uint32_t earned = static_cast<std::uint32_t>(now_ms - last_ping_ms_) / refill_ms;
    if (earned > 0) {
        // Never below what a stall granted (on_local_stall may leave more than a burst).
        ping_tokens_ = static_cast<std::uint8_t>(
            std::max<std::uint32_t>(ping_tokens_, std::min<std::uint32_t>(kPingBurst, ping_tokens_ + earned)));
        last_ping_ms_ = ping_tokens_ == kPingBurst ? now_ms : last_ping_ms_ + earned * refill_ms;
    }
    if (ping_tokens_ == 0) {
        const std::string why = "too many pings: more than " + std::to_string(kPingBurst) + " at once or one per " +
                                to_string(config_->min_interval) + " sustained";
        if (config_->websocket) {
            ws_violation(websocket_close_code(static_cast<std::uint16_t>(CloseCode::too_many_pings)), why);
        } else {
            protocol_violation(CloseCode::too_many_pings, why);
        }
        return false;
    }
    --ping_tokens_;
    return true;
}

void ServerSession::handle_timeout(Instant now) {
    if (state_ == State::closed || now < next_timeout()) return;
    if (state_ == State::handshake) {
        const std::string within = " within " + to_string(config_->handshake_timeout) + " of accept";
        if (config_->websocket) {
            ws_refuse_upgrade(408, "no WebSocket upgrade" + within);  // Still HTTP: 408 Request Timeout.
        } else {
            protocol_violation(CloseCode::handshake_timeout, "no HELLO" + within);
        }
        return;
    }
    if (state_ == State::admitting) {
        protocol_violation(CloseCode::handshake_timeout, "the application did not admit the HELLO within " +
                                                             to_string(config_->handshake_timeout) + " of accept");
        return;
    }
    const LivenessStep step = liveness_.on_timer(now);
    if (step.action == LivenessAction::send_ping) {
        if (config_->websocket) {
            ws_send_ping(step.ping);
        } else {
            control(step.ping);
        }
    } else if (step.action == LivenessAction::declare_dead) {
        SessionEvent e;
        e.kind = SessionEventKind::dead;
        e.reason = config_->framed ? DisconnectReason::heartbeat_timeout : DisconnectReason::idle_timeout;
        e.silence = now - liveness_.last_received();
        e.budget = liveness_.timeout();
        e.rtt = liveness_.rtt().has_sample() ? liveness_.rtt().smoothed() : Duration::zero();
        const std::string text = "nothing received for " + to_string(e.silence);
        const DisconnectReason reason = e.reason;
        outbox_.event(std::move(e));
        if (config_->framed) {
            close(CloseCode::heartbeat_timeout, text, reason);
        } else {
            abort(reason, "");
        }
    }
}

Result<void> ServerSession::send(std::span<const std::uint8_t> payload) {
    if (state_ != State::open) return make_error(Errc::not_open, "the session is not open");
    if (!config_->framed) {
        outbox_.bytes(payload);
        return {};
    }
    if (payload.size() > config_->max_body_size)
        return make_error(Errc::too_large, "message of " + std::to_string(payload.size()) +
                                               " bytes is larger than the " + std::to_string(config_->max_body_size) +
                                               "-byte limit");
    if (config_->websocket) return ws_send(payload, false);
    return outbox_.frame(Data{payload}, false, config_->max_body_size);
}

Result<void> ServerSession::send_text(std::span<const std::uint8_t> payload) {
    if (!config_->websocket || state_ != State::open) return send(payload);
    if (payload.size() > config_->max_body_size) return send(payload);  // The same too_large error.
    return ws_send(payload, true);
}

Result<void> ServerSession::encode_message(const ServerSessionConfig& config, std::span<const std::uint8_t> payload,
                                           std::vector<std::uint8_t>& out) {
    if (!config.framed) {
        out.insert(out.end(), payload.begin(), payload.end());
        return {};
    }
    if (payload.size() > config.max_body_size)
        return make_error(Errc::too_large, "message of " + std::to_string(payload.size()) +
                                               " bytes is larger than the " + std::to_string(config.max_body_size) +
                                               "-byte limit");
    if (config.websocket) {
        ws::append_frame(out, ws::Opcode::binary, payload);
        return {};
    }
    return append_frame(out, Data{payload}, config.max_body_size);
}

void ServerSession::close(CloseCode code, std::string_view text, DisconnectReason reason) {
    close(static_cast<std::uint16_t>(code), text, reason);
}

void ServerSession::close(std::uint16_t code, std::string_view text, DisconnectReason reason) {
    finish_with_close(code, text, reason, std::string(text));
}

void ServerSession::finish_with_close(std::uint16_t code, std::string_view text, DisconnectReason reason,
                                      std::string message) {
    if (state_ == State::closed) return;
    if (config_->websocket) {
        ws_close_frame(code, text);
    } else if (config_->framed) {
        control(Close{code, fit_close_reason(text)});
    }
    finish(reason, std::move(message));
}

void ServerSession::abort(DisconnectReason reason, std::string_view message) {
    if (state_ == State::closed) return;
    finish(reason, std::string(message));
}

void ServerSession::on_sent(Instant now) {
    if (state_ == State::open) liveness_.on_bytes_sent(now);
}

void ServerSession::on_peer_alive(Instant now) {
    if (state_ == State::open) liveness_.on_bytes_received(now);
}

void ServerSession::on_local_stall(Instant now, Duration lag) {
    if (state_ != State::open) return;
    liveness_.on_local_stall(now);
    // PINGs that queued up during our stall are not abuse: the peer may have
    // sent one per allowed interval all along, and they arrive now at once.
    const std::int64_t refill_ms = std::max<std::int64_t>(1, config_->min_interval.ms());
    const std::int64_t queued = lag.ms() / refill_ms + 1;
    ping_tokens_ = static_cast<std::uint8_t>(std::min<std::int64_t>(UINT8_MAX, kPingBurst + queued));
    last_ping_ms_ = static_cast<std::uint32_t>((now - accepted_at_).ms());
    pinged_ = true;
}

void ServerSession::protocol_violation(CloseCode code, const std::string& message) {
    count(&SessionCounters::protocol_errors);
    SessionEvent e;
    e.kind = SessionEventKind::error;
    e.message = message;
    outbox_.event(std::move(e));
    close(code, message, DisconnectReason::protocol_error);
}

void ServerSession::control(const Frame& frame) {
    if (std::holds_alternative<Ping>(frame) || std::holds_alternative<Pong>(frame))
        count(&SessionCounters::heartbeats_sent);
    // Control frames are ours and small: they always encode (a chosen id is
    // at most 255 bytes, checked by the decoder; a CLOSE reason is cut to fit).
    const Result<void> r = outbox_.frame(frame, true, config_->max_body_size);
    LIFELINE_CHECK(r.ok(), "a control frame always encodes");
}

void ServerSession::finish(DisconnectReason reason, std::string message) {
    state_ = State::closed;
    SessionEvent e;
    e.kind = SessionEventKind::closed;
    e.reason = reason;
    e.message = std::move(message);
    outbox_.event(std::move(e));
}

}  // namespace lifeline
