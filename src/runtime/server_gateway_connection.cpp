// The gateway API's per-connection half: admission of a HELLO (and takeover
// by resume token), the application's sends and closes, statistics, and
// callbacks that throw. Runs on the connection's loop thread only.
#include <string>

#include "runtime/server_connection.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline {

Admission default_admission(const HelloInfo& hello) {
    if (!IdClaim{hello.id_in_use, hello.resume_token_valid}.may_take_over()) {
        return Reject{static_cast<std::uint16_t>(CloseCode::id_in_use),
                      "client id in use; only its holder's resume token may replace it"};
    }
    return Admit{};
}

}  // namespace lifeline

namespace lifeline::runtime {

ConnectionId Connection::handle() const {
    return ConnectionId{id(), static_cast<std::uint32_t>(worker().index()), slot()};
}

ConnectionRef Connection::handle_ref() const { return {static_cast<std::uint32_t>(worker().index()), slot(), id()}; }

void Connection::on_hello(const SessionEvent& e) {
    Server::Impl& server = worker().server();
    const std::string peer_text = peer();
    HelloInfo info;
    info.conn = handle();
    info.client_id = e.client_id;
    info.credential = e.credential;
    info.peer = peer_text;
    info.target = e.target;
    if (!e.client_id.empty()) {
        const IdClaim claim = server.check_claim(e.client_id, e.resume_token);
        info.id_in_use = claim.in_use;
        info.resume_token_valid = claim.token_valid;
    }
    Admission verdict = Admit{};
    if (server.callbacks.on_hello) {
        if (!guarded("on_hello", [&] { verdict = server.callbacks.on_hello(info); })) return;
    } else {
        verdict = default_admission(info);
    }
    if (const Reject* no = std::get_if<Reject>(&verdict)) {
        session_.reject(no->code, no->text);
        return;  // drain() hands over the CLOSE and `closed` (reason rejected).
    }
    if (e.client_id.empty()) {
        [[maybe_unused]] Result<void> r = session_.admit("", now());  // Cannot fail: admitting, no token.
        return;
    }
    const ResumeToken token = server.resume_token(e.client_id, id());
    [[maybe_unused]] Result<void> r =
        session_.admit(std::string_view(reinterpret_cast<const char*>(token.data()), token.size()), now());
    // From here the directory holds the id, once; the session refers to it.
    session_.use_stored_id(server.admit_session(e.client_id, handle_ref(), peer_text));
    stored_id_ = true;
}

Result<SendStatus> Connection::send_app(std::span<const std::uint8_t> payload) {
    if (finished_ || !open()) return make_error(Errc::not_open, "connection " + std::to_string(id()) + " is not open");
    if (socket_.queued_bytes() + payload.size() > worker().options().output_budget) {
        wants_writable_ = true;
        refused_over_budget();
        return SendStatus::full;
    }
    if (auto r = session_.send(payload); !r) return r.error();
    count_data(0, payload.size());
    write_session_output();
    if (finished_) return make_error(Errc::not_open, "connection " + std::to_string(id()) + " closed while sending");
    return socket_.queued_bytes() == 0 ? SendStatus::sent : SendStatus::queued;
}

bool Connection::send_encoded(std::span<const std::uint8_t> frame, std::size_t payload) {
    if (finished_ || !open()) return false;
    if (socket_.queued_bytes() + frame.size() > worker().options().output_budget) {
        refused_over_budget();
        return false;
    }
    push_filler(frame, payload);
    return !finished_;
}

void Connection::close_by_app(std::uint16_t code, const std::string& text) {
    if (finished_ || session_.state() == ServerSession::State::closed) return;
    session_.close(code, text, DisconnectReason::local_close);
    drain();
}

ConnectionStats Connection::stats() const {
    ConnectionStats s;
    s.conn = handle();
    s.client_id = client_id();
    s.peer = peer();
    s.rtt = last_rtt();
    s.timeout = judged_timeout();
    s.last_heard = session_.liveness().last_received();
    s.bytes_in = socket_.bytes_in();
    s.bytes_out = socket_.bytes_out();
    s.queued_bytes = socket_.queued_bytes();
    s.open = open();
    return s;
}

std::string Connection::describe_throw(const char* name, std::exception_ptr error) {
    std::string what = std::string(name) + " threw";
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& ex) {
        what += std::string(": ") + ex.what();
    } catch (...) {
    }
    return what;
}

void Connection::callback_threw(const char* name, std::exception_ptr error) {
    const std::string what = describe_throw(name, error);
    Event e = event(EventKind::error);
    e.message = what + "; closing this connection only";
    worker().server().emit(e);
    close(DisconnectReason::local_close, what);
}

void Connection::maybe_writable() {
    wants_writable_ = false;
    Server::Impl& server = worker().server();
    if (server.callbacks.on_writable) guarded("on_writable", [&] { server.callbacks.on_writable(handle()); });
}

}  // namespace lifeline::runtime
