// The client: one event loop, N connections (runtime::ClientConnection), each
// with its own ClientSession per attempt and (with reconnect) its own backoff.
#include "lifeline/client.hpp"

#include <algorithm>
#include <random>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/codec.hpp"
#include "net/endpoint.hpp"
#include "runtime/client_connection.hpp"
#include "runtime/event_loop.hpp"

namespace lifeline {

using runtime::EventLoop;

Result<void> ClientOptions::validate() const {
    if (count < 1 || count > 20'000) return Error{"count must be 1..20000 (got " + std::to_string(count) + ")"};
    // Raw connections send no HELLO and run no heartbeat: these two are unused there.
    if (mode != ClientMode::raw) {
        // Stricter than the engine's (which lets 0 mean "the server's default"): they are sent as asked.
        if (heartbeat <= Duration::zero()) return Error{"heartbeat must be > 0"};
        if (heartbeat.ms() > UINT32_MAX || timeout.ms() > UINT32_MAX)
            return Error{"heartbeat and timeout must fit in 32-bit ms"};
    }
    const ClientSessionConfig session = runtime::session_config(*this, 0);
    if (auto v = session.validate(); !v) return v.error();
    if (!tls && (!tls_ca.empty() || !tls_server_name.empty())) return Error{"tls_ca and tls_server_name need tls"};
    if (session.framed && timeout <= Duration::zero()) return Error{"timeout must be > 0"};
    if (backoff_initial <= Duration::zero() || backoff_max < backoff_initial)
        return Error{"backoff_initial and backoff_max: need 0 < backoff_initial <= backoff_max"};
    if (ramp_per_second < 0) return Error{"ramp_per_second must be >= 0 connections per second"};
    if (start_jitter < Duration::zero()) return Error{"start_jitter must be >= 0"};
    if (connect_timeout <= Duration::zero()) return Error{"connect_timeout must be > 0"};
    if (auto k = keepalive.validate(); !k) return k.error().with_context("keepalive");
    return {};
}

}  // namespace lifeline

namespace lifeline {

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::create(const ClientOptions& options, ClientCallbacks callbacks) {
    Result<std::unique_ptr<Impl>> impl = runtime::make_client(options, std::move(callbacks), {});
    if (!impl) return impl.error();
    return std::unique_ptr<Client>(new Client(std::move(*impl)));
}

namespace runtime {

Result<std::unique_ptr<Client::Impl>> make_client(const ClientOptions& options, ClientCallbacks callbacks,
                                                  testing::ClientFaults faults) {
    if (auto v = options.validate(); !v) return v.error();
    Result<net::Endpoint> endpoint = net::parse_endpoint(options.server);
    if (!endpoint) return endpoint.error();
    auto impl = std::make_unique<Client::Impl>();
    impl->options = options;
    impl->callbacks = std::move(callbacks);
    impl->faults = std::move(faults);
    impl->endpoint = *endpoint;
    for (const std::string& source : options.source_addresses) {
        Result<net::Endpoint> e = net::parse_endpoint(source.find(':') == std::string::npos ? source + ":0" : source);
        if (!e) return e.error().with_context("source address");
        impl->sources.push_back(*e);
    }
    impl->rng.seed(options.seed != 0 ? options.seed : std::random_device{}());
    if (options.tls) {
        Result<std::shared_ptr<TlsContext>> tls = TlsContext::load_client(options.tls_ca);
        if (!tls) return tls.error();
        impl->tls = std::move(*tls);
        impl->tls_server_name = options.tls_server_name.empty() ? options.server.substr(0, options.server.rfind(':'))
                                                                : options.tls_server_name;
    }
    runtime::EventLoopConfig loop_config;
    loop_config.tick = options.tick;
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(loop_config);
    if (!loop) return loop.error();
    impl->loop = std::move(*loop);
    Client::Impl* raw = impl.get();
    impl->loop->set_stall_callback([raw](Duration lag) {
        // Our own stop (SIGSTOP, suspend, a long callback) is not the server's silence.
        for (auto& c : raw->conns) c->forgive_stall(raw->loop->now());
        Event e;
        e.kind = EventKind::stall;
        e.silence = lag;
        e.message =
            "event loop woke " + to_string(lag) + " late; silence during the stall is not held against the server";
        raw->emit(e);
    });
    for (int i = 0; i < options.count; ++i)
        impl->conns.push_back(std::make_unique<runtime::ClientConnection>(*impl, i));
    return impl;
}

}  // namespace runtime

void Client::run() {
    const double ramp = impl_->options.ramp_per_second;
    const std::int64_t jitter_ns = impl_->options.start_jitter.ns();
    std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(0, jitter_ns - 1));
    for (std::size_t i = 0; i < impl_->conns.size(); ++i) {
        const Duration slot =
            ramp > 0 ? Duration::nanoseconds(static_cast<std::int64_t>(1e9 * double(i) / ramp)) : Duration::zero();
        impl_->conns[i]->start_after(jitter_ns > 0 ? slot + Duration::nanoseconds(jitter(impl_->rng)) : slot);
    }
    if (impl_->finished < static_cast<int>(impl_->conns.size())) impl_->loop->run();
}

void Client::stop() {
    Impl* impl = impl_.get();
    impl->loop->post([impl] {
        impl->stopping = true;
        for (auto& c : impl->conns) c->stop();
        impl->loop->stop();
    });
}

void Client::send(int connection, std::span<const std::uint8_t> payload) {
    Impl* impl = impl_.get();
    if (connection < 0 || connection >= static_cast<int>(impl->conns.size())) return;
    std::vector<std::uint8_t> copy(payload.begin(), payload.end());
    impl->loop->post([impl, connection, copy = std::move(copy)] {
        impl->conns[static_cast<std::size_t>(connection)]->send_data(copy);
    });
}

}  // namespace lifeline
