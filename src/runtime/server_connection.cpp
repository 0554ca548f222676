#include "runtime/server_connection.hpp"

#include <netinet/in.h>

#include <algorithm>

#include "lifeline/check.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "lifeline/sys/tcp_info.hpp"
#include "net/endpoint.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline::runtime {

namespace {

// io_uring: how long a closed connection's last output may wait behind a send
// still in flight before the socket is shut down regardless.
constexpr Duration kCloseLinger = Duration::milliseconds(250);

}  // namespace

// Every idle connection pays for each byte (in place in its worker's
// ConnectionSlab, no malloc header): the loop object 40 (vtable, timer node),
// the engine's ServerSession 88, the StreamSocket 24, and 8 of its own (an
// IPv4 peer, its port, the flags).
static_assert(sizeof(Connection) <= 160, "an idle connection's every byte counts (docs/BENCHMARKS.md)");

Worker& Connection::worker() { return Worker::current(); }

Instant Connection::now() const { return worker().loop().now(); }

Connection::Connection(Worker& worker, int fd, const sockaddr_storage& peer, std::uint64_t id, Instant now)
    // The queue finds lifeline frames' boundaries from their length headers.
    // WebSocket frames are queued as opaque pushes (each transmit of the
    // session is whole frames), so its control bytes go between pushes.
    : session_(worker.server().session, id, now),
      socket_(fd, worker.options().mode == ServerMode::framed && !worker.server().tls) {
    if (worker.server().tls) extras().tls = std::make_unique<TlsStream>(*worker.server().tls);
    if (peer.ss_family == AF_INET) {
        const auto& v4 = reinterpret_cast<const sockaddr_in&>(peer);
        peer_v4_ = v4.sin_addr.s_addr;
        peer_port_ = ntohs(v4.sin_port);
    } else if (peer.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(peer);
        extras().peer = net::format_address(AF_INET6, &v6.sin6_addr, ntohs(v6.sin6_port));
    }
}

// Connections are destroyed after finish() (which cancelled the timer) or by
// their Worker, which cancels every timer first.
Connection::~Connection() { delete extras_if_any(); }

Connection::Extras& Connection::extras() {
    if (Extras* x = extras_if_any()) return *x;
    auto x = std::make_unique<Extras>();
    session_.set_owner_data(x.get());
    return *x.release();
}

void Connection::count_data(std::size_t in, std::size_t out) {
    Extras& x = extras();
    x.data_in += in;
    x.data_out += out;
}

std::string Connection::peer() const {
    if (const Extras* x = extras_if_any(); x != nullptr && !x->peer.empty()) return x->peer;
    return net::format_address(AF_INET, &peer_v4_, peer_port_);
}

Event Connection::event(EventKind kind) const {
    Event e;
    e.kind = kind;
    e.conn = id();
    e.peer = peer();
    e.client_id = client_id();
    return e;
}

Duration Connection::last_rtt() const {
    if (session_.liveness().rtt().has_sample()) return session_.liveness().rtt().smoothed();
    Result<sys::TcpInfo> info = sys::read_tcp_info(socket_.fd());
    return info ? info->rtt : Duration::zero();
}

Duration Connection::judged_timeout() const {
    const Duration t = session_.timeout();
    return t == Duration::infinite() ? worker().options().timeout : t;
}

void Connection::start() {
    Server::Impl& server = worker().server();
    server.metrics.accepted_total.fetch_add(1, std::memory_order_relaxed);
    server.metrics.connections_open.fetch_add(1, std::memory_order_relaxed);
    server.emit(event(EventKind::connect));
    Result<sys::EffectiveKeepalive> k = server.options.keepalive_from_outside
                                            ? Result<sys::EffectiveKeepalive>(sys::EffectiveKeepalive{})
                                            : sys::apply_keepalive(socket_.fd(), server.options.keepalive);
    if (!k) {
        Event e = event(EventKind::error);
        e.message = k.error().message;
        server.emit(e);
        close(DisconnectReason::local_close, k.error().message);
        return;
    }
    // Ignored on purpose: TCP_NODELAY only makes small writes leave sooner; a
    // socket that refuses it (it cannot, once accepted) still works.
    [[maybe_unused]] auto nd = net::set_nodelay(socket_.fd());
    if (auto r = socket_.watch(worker().loop(), *this); !r) {
        close(DisconnectReason::local_close, r.error().message);
        return;
    }
    drain();  // Raw: the session is open already.
}

// ---- The session's side --------------------------------------------------------

void Connection::write_session_output() {
    while (std::optional<Transmit> t = session_.poll_transmit()) {
        transmit(t->bytes, t->control, session_.state() == ServerSession::State::closed);
    }
}

void Connection::drain() {
    if (draining_session_) {
        drain_again_ = true;
        return;
    }
    draining_session_ = true;
    do {
        drain_again_ = false;
        // Write each Transmit before anything else touches the session: its
        // span is valid only until then. Once the session is closed, what is
        // left (a CLOSE frame) goes out on a best-effort basis.
        write_session_output();
        while (std::optional<SessionEvent> e = session_.poll_event()) {
            on_session_event(*e);
            drain_again_ = true;  // An event may have queued output (an echo).
        }
    } while (drain_again_ && !finished_);
    draining_session_ = false;
    if (finished_) return;
    // Only when it is sooner (a HELLO's deadline replacing the handshake's):
    // a later one is taken when the armed timer fires (the lazy re-arm).
    const Instant next = session_.next_timeout();
    if (!armed() || next < deadline()) rearm();
}

void Connection::on_session_event(SessionEvent& e) {
    Server::Impl& server = worker().server();
    switch (e.kind) {
        case SessionEventKind::hello:
            on_hello(e);
            return;
        case SessionEventKind::opened:
            on_opened(e);
            return;
        case SessionEventKind::message:
            on_message(e);
            return;
        case SessionEventKind::rtt:
            server.metrics.rtt.observe(e.rtt);
            return;
        case SessionEventKind::dead:
            on_dead(e);
            return;
        case SessionEventKind::error: {
            Event err = event(EventKind::error);
            err.message = std::move(e.message);
            server.emit(err);
            return;
        }
        case SessionEventKind::closed:
            // A CLOSE queued by a callback in this same drain (on_hello's
            // Reject, close()) is still in the session: out with it first.
            write_session_output();
            // Shutting down: the CLOSE frame (and what was before it) leaves first.
            if (shutdown_flush_ && output_pending()) return;
            finish(e.reason, e.message);
            return;
    }
}

void Connection::on_opened(const SessionEvent& e) {
    Server::Impl& server = worker().server();
    if (server.options.mode != ServerMode::raw) {
        Event hello = event(EventKind::hello);
        hello.interval = e.interval;
        hello.timeout = e.timeout;
        if (const std::string_view chosen = session_.chosen_id(); !chosen.empty())
            hello.epoch = server.presence_epoch(chosen, id());
        server.emit(hello);
    }
    admitted_ = true;
    if (server.callbacks.on_open && !guarded("on_open", [&] { server.callbacks.on_open(handle()); })) return;
    // After the WELCOME: no DATA ever precedes the handshake.
    if (open() && server.faults.push_rate > 0) worker().start_push(*this);
}

void Connection::on_message(const SessionEvent& e) {
    Server::Impl& server = worker().server();
    const bool echo = server.options.echo;
    count_data(e.payload.size(), echo ? e.payload.size() : 0);
    if (server.callbacks.on_message &&
        !guarded("on_message", [&] { server.callbacks.on_message(handle(), e.payload); }))
        return;
    // Cannot fail while open: what came in fits the same size limit going out.
    if (echo && open()) [[maybe_unused]]
        Result<void> r = e.text ? session_.send_text(e.payload) : session_.send(e.payload);
}

void Connection::on_dead(const SessionEvent& e) {
    Server::Impl& server = worker().server();
    Event dead = event(EventKind::dead);
    dead.reason = e.reason;
    dead.silence = e.silence;
    dead.budget = e.budget;
    dead.rtt = last_rtt();
    server.metrics.detection_latency.observe(e.silence);
    server.emit(dead);
}

void Connection::close(DisconnectReason reason, const std::string& message) {
    if (finished_) return;
    if (session_.state() == ServerSession::State::closed) {
        // Its `closed` event is pending (drain() finishes it), or it was put
        // off until a shutdown's output left: this ends the wait.
        if (!draining_session_) finish(reason, message);
        return;
    }
    session_.abort(reason, message);
    drain();
}

void Connection::close_with_frame(DisconnectReason reason, CloseCode code, const std::string& text) {
    if (finished_ || session_.state() == ServerSession::State::closed) return;
    session_.close(code, text, reason);
    drain();
}

void Connection::shut_down() {
    if (finished_) return;
    shutdown_flush_ = true;
    if (worker().options().mode != ServerMode::raw && open()) {
        session_.close(CloseCode::shutdown, "server shutting down", DisconnectReason::shutdown);
    } else {
        session_.abort(DisconnectReason::shutdown, "");
    }
    drain();
}

void Connection::finish_shutdown() {
    if (finished_) return;
    session_.abort(DisconnectReason::shutdown, "");
    drain();
    if (!finished_) finish(DisconnectReason::shutdown, "");
}

void Connection::finish(DisconnectReason reason, const std::string& message) {
    if (finished_) return;
    if (TlsStream* t = tls(); t != nullptr && t->handshake_done()) {
        // close_notify: the peer sees an orderly end, not a truncation. Best
        // effort, straight to the socket (no backlog check: that could close
        // this connection again from inside its own finish).
        t->shutdown();
        const std::vector<std::uint8_t> notify = t->take_ciphertext();
        if (!notify.empty()) [[maybe_unused]]
            const StreamSocket::SendResult r = socket_.send(worker().loop(), *this, notify, false);
    }
    socket_.send_before_close();  // First, so the event's bytes_out counts it.
    Server::Impl& server = worker().server();
    EventLoop& loop = worker().loop();
    Event e = event(EventKind::closed);
    e.reason = reason;
    e.duration = loop.now() - session_.accepted_at();
    e.bytes_in = socket_.bytes_in();
    e.bytes_out = socket_.bytes_out();
    e.bytes_unsent = socket_.queued_bytes();
    const Extras* x = extras_if_any();
    e.data_in = x != nullptr ? x->data_in : 0;
    e.data_out = x != nullptr ? x->data_out : 0;
    e.message = message;
    finished_ = true;
    server.metrics.count_closed(reason);
    server.metrics.connections_open.fetch_sub(1, std::memory_order_relaxed);
    server.emit(e);
    // Not only if admitted_: presence goes online at admission, before
    // on_open, and a connection can end in between.
    // Before on_close: once the application hears of the end, find(id) no
    // longer names this connection.
    if (!session_.chosen_id().empty()) {
        report_offline(reason);
        server.release_session(session_.chosen_id(), handle_ref());
    }
    if (admitted_ && server.callbacks.on_close) {
        // Exactly once, with the event's reason. Thrown or not, it is over.
        try {
            server.callbacks.on_close(handle(), reason, message);
        } catch (...) {
            Event err = event(EventKind::error);
            err.message = describe_throw("on_close", std::current_exception());
            server.emit(err);
        }
    }
    // The last use of the stored id: this connection reports nothing more.
    if (stored_id_) {
        const std::string_view stored = session_.chosen_id();
        session_.forget_stored_id();
        stored_id_ = false;
        server.unpin_session(stored);  // Valid until this returns.
    }
    loop.cancel(*this);
    // A send still in flight delays the FIN (and what follows it) a little;
    // the timer bounds it for a peer that does not read.
    if (socket_.close(loop)) loop.schedule(*this, loop.now() + kCloseLinger);
    worker().retire(slot());
}

// From the peer's last byte to the verdict, for the reasons that are a
// detection (zero for the others: an orderly close is heard at once).
Duration Connection::detected_after(DisconnectReason reason) const {
    switch (reason) {
        case DisconnectReason::heartbeat_timeout:
        case DisconnectReason::idle_timeout:
        case DisconnectReason::keepalive_timeout:
        case DisconnectReason::user_timeout:
        case DisconnectReason::unreachable: {
            const Instant last = session_.liveness().last_received();
            const Instant now = worker().loop().now();
            return last == Instant::never() || last > now ? Duration::zero() : now - last;
        }
        default:
            return Duration::zero();
    }
}

void Connection::report_offline(DisconnectReason reason) {
    Server::Impl& server = worker().server();
    const PresenceOffline o = server.presence_offline(session_.chosen_id(), id(), reason, detected_after(reason).ms());
    if (!o.applied && o.epoch == 0) return;  // Never online here (refused, or it never got that far).
    Event e = event(EventKind::offline);
    e.reason = reason;
    e.epoch = o.epoch;
    if (!o.applied) e.message = "superseded: a newer session of this id holds its presence";
    server.emit(e);
}

// ---- Timers --------------------------------------------------------------------

// TLS: the handshake has the session's handshake deadline in every mode (a
// raw session is open at accept, so its own deadline would never apply).
Instant Connection::tls_handshake_deadline() const {
    const TlsStream* t = tls();
    if (t == nullptr || t->handshake_done()) return Instant::never();
    return session_.accepted_at() + worker().options().handshake_timeout;
}

void Connection::rearm() {
    Instant next = std::min(session_.next_timeout(), tls_handshake_deadline());
    if (over_budget_ms() != 0) next = std::min(next, over_budget_deadline());
    if (next.is_never()) {
        worker().loop().cancel(*this);
    } else {
        worker().loop().schedule(*this, next);
    }
}

void Connection::on_timer() {
    if (finished_) {
        socket_.abort_linger();
        return;
    }
    const Instant t = now();
    if (t >= tls_handshake_deadline()) {
        const std::string why =
            "no TLS handshake within " + to_string(worker().options().handshake_timeout) + " of accept";
        Event e = event(EventKind::error);
        e.message = why;
        worker().server().emit(e);
        session_.abort(DisconnectReason::protocol_error, why);
        drain();
        return;
    }
    if (over_budget_ms() != 0 && t >= over_budget_deadline()) {
        judge_stalled_output(t);
        if (finished_) return;
    }
    if (socket_.reading_paused()) credit_unread_input(t);
    session_.handle_timeout(t);
    drain();
    if (!finished_) rearm();
}

void Connection::forgive_stall(Instant t, Duration lag) {
    if (!open()) return;
    session_.on_local_stall(t, lag);
    rearm();
}

nlohmann::json Connection::describe(Instant t) const {
    const Result<sys::EffectiveKeepalive> ka = sys::read_keepalive(socket_.fd());
    const LivenessMachine& liveness = session_.liveness();
    nlohmann::json j{
        {"conn", id()},
        {"peer", peer()},
        {"id", client_id()},
        {"state", open() ? "open" : "handshake"},
        {"age_ms", (t - session_.accepted_at()).ms_f()},
        {"last_received_ms_ago", (t - liveness.last_received()).ms_f()},
        {"rtt_ms", last_rtt().ms_f()},
        {"suspicion", liveness.suspicion(t)},
        {"timeout_ms", judged_timeout().ms_f()},
        {"bytes_in", socket_.bytes_in()},
        {"bytes_out", socket_.bytes_out()},
    };
    if (ka) {
        j["keepalive"] = {{"enabled", ka->enabled},
                          {"idle_s", ka->idle.ns() / 1'000'000'000},
                          {"interval_s", ka->interval.ns() / 1'000'000'000},
                          {"count", ka->count},
                          {"user_timeout_ms", ka->user_timeout.ms()}};
    }
    return j;
}

}  // namespace lifeline::runtime
