// The server: N shared-nothing event loops (runtime::Worker), each with its
// own SO_REUSEPORT listener and its own connections; only the session table
// (client id -> connection, for takeover) and the metrics are shared. Every
// protocol rule is the engine's (ServerSession, one per connection); the
// runtime moves bytes, keeps time and reports.
#include "lifeline/server.hpp"

#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <optional>
#include <thread>

#include "lifeline/sys/socket_options.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_redis_presence.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline {

using runtime::EventLoop;

// ---- Sessions -----------------------------------------------------------------

namespace {

// 256 bits from the kernel's CSPRNG: the key of every resume token this
// server issues (HMAC-SHA256), so nobody can compute one, not even someone
// who saw other clients' tokens.
std::array<std::uint8_t, 32> random_token_key() {
    std::array<std::uint8_t, 32> key{};
    std::size_t got = 0;
    while (got < key.size()) {
        const ssize_t n = ::getrandom(key.data() + got, key.size() - got, 0);
        if (n > 0) got += static_cast<std::size_t>(n);
        LIFELINE_CHECK(n > 0 || errno == EINTR, "getrandom failed: no safe resume-token key");
    }
    return key;
}

SessionDirectoryConfig directory_config(const ServerOptions& o) {
    SessionDirectoryConfig c;
    c.presence = o.presence;
    c.retention = o.presence_retention;
    c.token_key = random_token_key();
    return c;
}

}  // namespace

Server::Impl::Impl(const ServerOptions& o) : options(o), sessions(directory_config(o)) {}

IdClaim Server::Impl::check_claim(std::string_view id, std::string_view token) {
    std::lock_guard lock(sessions_mutex);
    return sessions.check(id, token);
}

// The key never changes: no lock needed.
ResumeToken Server::Impl::resume_token(std::string_view id, std::uint64_t conn) const {
    return sessions.token_for(id, conn);
}

void Server::Impl::close_connection(runtime::ConnectionRef ref, DisconnectReason reason, CloseCode code,
                                    std::string text) {
    // The connection may live on another loop: close it there.
    runtime::Worker& owner = *workers[ref.loop];
    auto close = [&owner, ref, reason, code, text = std::move(text)] {
        if (runtime::Connection* c = owner.find(ref.slot, ref.conn)) c->close_with_frame(reason, code, text);
    };
    if (runtime::Worker::on_this_thread() == &owner) {
        close();
    } else {
        owner.loop().post(std::move(close));
    }
}

void Server::Impl::release_session(std::string_view id, runtime::ConnectionRef owner) {
    std::lock_guard lock(sessions_mutex);
    sessions.release(id, owner);
}

void Server::Impl::unpin_session(std::string_view id) {
    std::lock_guard lock(sessions_mutex);
    sessions.unpin(id);
}

// ---- Server -------------------------------------------------------------------

Server::Impl::~Impl() = default;

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options, ServerCallbacks callbacks) {
    Result<std::unique_ptr<Impl>> impl = runtime::make_server(options, std::move(callbacks), {});
    if (!impl) return impl.error();
    return std::unique_ptr<Server>(new Server(std::move(*impl)));
}

namespace runtime {

Result<std::unique_ptr<Server::Impl>> make_server(const ServerOptions& options, ServerCallbacks callbacks,
                                                  const testing::ServerFaults& faults) {
    if (auto v = options.validate(); !v) return v.error();
    if (faults.push_rate > testing::kMaxPushRate)
        return make_error(Errc::invalid_argument, "push_rate must be at most 1G (1 GiB/s); got " +
                                                      std::to_string(faults.push_rate) + " bytes/s");
    Result<net::Endpoint> endpoint = net::parse_endpoint(options.listen);
    if (!endpoint) return endpoint.error().with_context("listen");
    auto impl = std::make_unique<Server::Impl>(options);
    impl->faults = faults;
    impl->session = runtime::session_config(options, &impl->metrics.sessions);
    if (options.tls_cert.empty() != options.tls_key.empty())
        return make_error(Errc::invalid_argument, "tls_cert and tls_key go together (TLS needs both)");
    if (!options.tls_cert.empty()) {
        Result<std::shared_ptr<TlsContext>> tls = TlsContext::load_server(options.tls_cert, options.tls_key);
        if (!tls) return tls.error();
        impl->tls = std::move(*tls);
    }
    impl->callbacks = std::move(callbacks);
    impl->endpoint = *endpoint;
    for (int i = 0; i < options.threads; ++i) {
        // Port 0: the first bind picks one; the other loops join it.
        Result<int> fd = net::listen_tcp(impl->endpoint, /*reuse_port=*/true, SOMAXCONN);
        if (!fd) return fd.error();
        if (i == 0) {
            Result<net::Endpoint> bound = net::parse_endpoint(net::local_address(*fd));
            if (bound) impl->endpoint = *bound;
        }
        runtime::EventLoopConfig loop_config;
        loop_config.tick = options.tick;
        loop_config.stall_threshold = options.stall_threshold;
        loop_config.coalesce = options.coalesce;
        loop_config.use_io_uring = options.io == IoBackend::uring;
        Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(loop_config);
        if (!loop) {
            ::close(*fd);
            return loop.error();
        }
        impl->workers.push_back(
            std::make_unique<runtime::Worker>(*impl, static_cast<std::size_t>(i), std::move(*loop), *fd));
        if (auto s = impl->workers.back()->start(); !s) return s.error();
    }
    if (!options.presence_redis.empty()) {
        Result<std::unique_ptr<runtime::RedisPresence>> redis = runtime::RedisPresence::create(*impl);
        if (!redis) return redis.error().with_context("presence");
        impl->redis_presence = std::move(*redis);
    }
    if (!options.http.empty()) {
        Server::Impl* raw = impl.get();
        runtime::HttpEndpoint::Pages pages;
        pages.metrics = [raw] { return raw->metrics_text_unlocked(); };
        pages.connections = [raw] { return raw->connections_json_unlocked(); };
        if (options.presence) {
            pages.presence_list = [raw] { return raw->presence_list_json(); };
            pages.presence = [raw](const std::string& id) { return raw->presence_json(id); };
        }
        Result<std::unique_ptr<runtime::HttpEndpoint>> http = runtime::HttpEndpoint::start(options.http, pages);
        if (!http) return http.error().with_context("http");
        impl->http = std::move(*http);
    }
    return impl;
}

}  // namespace runtime

void Server::run() {
    Event listening;
    listening.kind = EventKind::listening;
    listening.message = impl_->endpoint.to_string();
    impl_->emit(listening);
    if (impl_->http) {
        listening.message = impl_->http->url();  // The metrics endpoint, port resolved.
        impl_->emit(listening);
    }
    if (impl_->redis_presence) impl_->redis_presence->start();
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < impl_->workers.size(); ++i) {
        threads.emplace_back([this, i] { impl_->workers[i]->run(); });
    }
    // A stop() that came before run() still counts.
    if (impl_->stop_requested.load()) stop();
    impl_->workers[0]->run();
    for (auto& t : threads) t.join();
    // Every connection has ended: its offline is queued for Redis. Send them.
    if (impl_->redis_presence) impl_->redis_presence->finish(Duration::seconds(2));
}

void Server::stop() {
    impl_->stop_requested.store(true);
    for (auto& w : impl_->workers) {
        runtime::Worker* worker = w.get();
        worker->loop().post([worker] { worker->begin_shutdown(); });
    }
}

std::string Server::local_address() const { return impl_->endpoint.to_string(); }

std::string Server::metrics_text() const { return impl_->metrics_text_unlocked(); }

std::string Server::connections_json() const { return impl_->connections_json_unlocked(); }

std::string Server::Impl::metrics_text_unlocked() const {
    Duration lag;
    for (const auto& w : workers) lag = std::max(lag, w->loop().max_lag());
    return metrics.prometheus_text(lag);
}

std::string Server::Impl::connections_json_unlocked() const {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& w : workers) {
        auto promise = std::make_shared<std::promise<nlohmann::json>>();
        std::future<nlohmann::json> future = promise->get_future();
        runtime::Worker* worker = w.get();
        worker->loop().post([worker, promise] { promise->set_value(worker->describe_connections()); });
        // A loop that does not answer within a second is stuck; say so rather than hang.
        if (future.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
            all.push_back({{"error", "event loop " + std::to_string(worker->index()) + " did not answer"}});
            continue;
        }
        for (auto& c : future.get()) all.push_back(std::move(c));
    }
    return all.dump();
}

}  // namespace lifeline
