// The gateway API's server half (lifeline/server.hpp): calls from any thread
// reach a connection on its own loop, at once when already there, posted
// (eventfd wake-up) when not.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <string>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "lifeline/server.hpp"
#include "runtime/server_connection.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline {

namespace {

using runtime::Connection;
using runtime::Worker;

Error not_ours() { return make_error(Errc::invalid_argument, "not a connection of this server"); }

Error no_such(ConnectionId conn) {
    return make_error(Errc::not_open, "connection " + std::to_string(conn.number) + " is not open");
}

}  // namespace

// ---- Reaching a connection ------------------------------------------------------

// The worker `conn` lives on, or nullptr for a handle no loop of ours made.
static Worker* worker_of(const Server::Impl& impl, ConnectionId conn) {
    if (conn.number == 0 || conn.loop >= impl.workers.size()) return nullptr;
    return impl.workers[conn.loop].get();
}

// `conn` when the calling thread is its loop's; else nullptr.
static Connection* here(const Server::Impl& impl, ConnectionId conn) {
    Worker* w = worker_of(impl, conn);
    if (w == nullptr || Worker::on_this_thread() != w) return nullptr;
    return w->find(conn.slot, conn.number);
}

Result<SendStatus> Server::send(ConnectionId conn, std::span<const std::uint8_t> payload) {
    Worker* w = worker_of(*impl_, conn);
    if (w == nullptr) return not_ours();
    if (payload.size() > impl_->options.max_body_size)
        return make_error(Errc::too_large, "payload of " + std::to_string(payload.size()) +
                                               " bytes is larger than max_body_size (" +
                                               std::to_string(impl_->options.max_body_size) + ")");
    if (Worker::on_this_thread() == w) {
        Connection* c = w->find(conn.slot, conn.number);
        if (c == nullptr) return no_such(conn);
        return c->send_app(payload);
    }
    w->loop().post([w, conn, copy = std::vector<std::uint8_t>(payload.begin(), payload.end())] {
        if (Connection* c = w->find(conn.slot, conn.number)) [[maybe_unused]]
            Result<SendStatus> r = c->send_app(copy);
    });
    return SendStatus::queued;
}

Result<void> Server::close(ConnectionId conn, std::uint16_t code, std::string text) {
    Worker* w = worker_of(*impl_, conn);
    if (w == nullptr) return not_ours();
    if (Worker::on_this_thread() == w) {
        Connection* c = w->find(conn.slot, conn.number);
        if (c == nullptr) return no_such(conn);
        c->close_by_app(code, text);
        return {};
    }
    w->loop().post([w, conn, code, text = std::move(text)] {
        if (Connection* c = w->find(conn.slot, conn.number)) c->close_by_app(code, text);
    });
    return {};
}

std::optional<ConnectionId> Server::find(std::string_view client_id) const {
    std::lock_guard lock(impl_->sessions_mutex);
    const std::optional<runtime::ConnectionRef> r = impl_->sessions.find(client_id);
    if (!r) return std::nullopt;
    return ConnectionId{r->conn, r->loop, r->slot};
}

std::size_t Server::broadcast(std::span<const std::uint8_t> payload, std::function<bool(ConnectionId)> filter) {
    if (payload.size() > impl_->options.max_body_size) return 0;
    // Encoded once; every loop shares the bytes (each writes them to its own sockets).
    auto frame = std::make_shared<std::vector<std::uint8_t>>();
    if (auto r = ServerSession::encode_message(impl_->session, payload, *frame); !r) return 0;
    auto shared_filter = std::make_shared<std::function<bool(ConnectionId)>>(std::move(filter));
    const std::size_t size = payload.size();
    for (auto& worker : impl_->workers) {
        Worker* w = worker.get();
        auto deliver = [w, frame, shared_filter, size] {
            w->for_each_open([&](Connection& c) {
                if (*shared_filter && !(*shared_filter)(c.handle())) return;
                if (!c.send_encoded(*frame, size))
                    w->server().metrics.broadcast_dropped_total.fetch_add(1, std::memory_order_relaxed);
            });
        };
        if (Worker::on_this_thread() == w) {
            deliver();
        } else {
            w->loop().post(std::move(deliver));
        }
    }
    return impl_->workers.size();
}

void Server::for_each(std::function<void(ConnectionId)> fn) {
    auto shared = std::make_shared<std::function<void(ConnectionId)>>(std::move(fn));
    for (auto& worker : impl_->workers) {
        Worker* w = worker.get();
        w->loop().post([w, shared] { w->for_each_open([&](Connection& c) { (*shared)(c.handle()); }); });
    }
}

Result<void> Server::post(ConnectionId conn, std::function<void()> fn) {
    Worker* w = worker_of(*impl_, conn);
    if (w == nullptr) return not_ours();
    w->loop().post(std::move(fn));
    return {};
}

Result<void> Server::set_context(ConnectionId conn, void* context) {
    Connection* c = here(*impl_, conn);
    if (c == nullptr)
        return make_error(Errc::invalid_argument,
                          "set_context: connection " + std::to_string(conn.number) +
                              " is not open on this thread's loop (call it from the connection's callbacks)");
    c->set_context(context);
    return {};
}

void* Server::context(ConnectionId conn) const {
    Connection* c = here(*impl_, conn);
    return c != nullptr ? c->context() : nullptr;
}

Result<ConnectionStats> Server::stats(ConnectionId conn) const {
    Worker* w = worker_of(*impl_, conn);
    if (w == nullptr) return not_ours();
    Worker* current = Worker::on_this_thread();
    if (current == w) {
        Connection* c = w->find(conn.slot, conn.number);
        if (c == nullptr) return no_such(conn);
        return c->stats();
    }
    if (current != nullptr)
        return make_error(Errc::invalid_argument,
                          "stats() for another loop's connection from a loop thread (it could deadlock); use post()");
    std::promise<std::optional<ConnectionStats>> answer;
    std::future<std::optional<ConnectionStats>> result = answer.get_future();
    w->loop().post([w, conn, &answer] {
        Connection* c = w->find(conn.slot, conn.number);
        answer.set_value(c != nullptr ? std::optional<ConnectionStats>(c->stats()) : std::nullopt);
    });
    std::optional<ConnectionStats> s = result.get();
    if (!s) return no_such(conn);
    return *s;
}

Result<void> Server::adopt(int fd) {
    auto refuse = [fd](std::string why, int err = 0) -> Result<void> {
        ::close(fd);
        return make_error(err != 0 ? Errc::system : Errc::invalid_argument, "adopt: " + why, err);
    };
    int type = 0;
    socklen_t len = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return refuse("not a socket", errno);
    if (type != SOCK_STREAM) return refuse("not a stream socket");
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0)
        return refuse("not a connected socket", errno);
    if (peer.ss_family != AF_INET && peer.ss_family != AF_INET6) return refuse("not a TCP/IP socket");
    if (int fl = ::fcntl(fd, F_GETFL); fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return refuse("cannot make it non-blocking", errno);
    Worker* least = impl_->workers.front().get();
    for (auto& w : impl_->workers)
        if (w->live() < least->live()) least = w.get();
    least->loop().post([least, fd, peer] { least->adopt(fd, peer); });
    return {};
}

}  // namespace lifeline
