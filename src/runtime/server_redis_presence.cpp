// The server's Redis presence: PresencePublisher on a loop of its own, fed by
// the connections' loops through post(), talking to Redis through RedisLink.
#include "runtime/server_redis_presence.hpp"

#include <unistd.h>

#include <chrono>

#include "runtime/server_connection.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline::runtime {

namespace {

// Tag of the control channel's subscription (the publisher's tags count up from 1).
constexpr std::uint64_t kControlTag = std::uint64_t{1} << 63;

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

PresencePublisherConfig publisher_config(const ServerOptions& o, const std::string& gateway) {
    PresencePublisherConfig c;
    c.gateway = gateway;
    c.ttl = o.presence_ttl;
    c.offline_retention = o.presence_retention;
    c.stream = o.presence_stream;
    c.buffer_limit = o.presence_buffer;
    return c;
}

// A Redis that has not answered for this long is down (its entries then have
// two thirds of their TTL left, refreshes included).
Duration reply_timeout(Duration ttl) { return std::clamp(ttl / 6, Duration::seconds(1), Duration::seconds(5)); }

}  // namespace

}  // namespace lifeline::runtime

namespace lifeline {

std::string default_presence_gateway(std::string_view listen_address) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
    const std::size_t colon = listen_address.rfind(':');
    const std::string_view port = colon == std::string_view::npos ? listen_address : listen_address.substr(colon + 1);
    return std::string(host) + ":" + std::string(port);
}

}  // namespace lifeline

namespace lifeline::runtime {

Result<std::unique_ptr<RedisPresence>> RedisPresence::create(Server::Impl& server) {
    Result<RedisAddress> address = parse_redis_url(server.options.presence_redis);
    if (!address) return address.error();
    EventLoopConfig config;
    config.tick = Duration::milliseconds(10);
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(config);
    if (!loop) return loop.error().with_context("presence loop");
    return std::unique_ptr<RedisPresence>(
        new RedisPresence(server, std::move(*loop), *address, publisher_config(server.options, server.gateway_name())));
}

RedisPresence::RedisPresence(Server::Impl& server, std::unique_ptr<EventLoop> loop, RedisAddress address,
                             PresencePublisherConfig config)
    : server_(server), loop_(std::move(loop)), publisher_(std::move(config)) {
    const Duration timeout = reply_timeout(publisher_.config().ttl);
    router_ = std::make_unique<RedisRouter>(
        *loop_, address, timeout,
        RedisRouter::Callbacks{[this](std::vector<std::uint16_t> node_of_slot) {
                                   last_error_.clear();
                                   publisher_.on_topology(std::move(node_of_slot));
                                   publisher_.on_connected(loop_->now(), unix_ms_now());
                                   pump();
                               },
                               [this](const std::string& why) {
                                   if (why != last_error_) {
                                       Event e;
                                       e.kind = EventKind::error;
                                       e.message = "presence: Redis " + router_->seed().to_string() + ": " + why +
                                                   " (buffering; detection is unaffected)";
                                       server_.emit(e);
                                       last_error_ = why;
                                   }
                                   publisher_.on_disconnected();
                                   publish_metrics();
                               },
                               [this](std::uint64_t tag, const RedisValue& v) {
                                   publisher_.on_reply(tag, v);
                                   pump();
                               }});
    subscribe(address);
}

// The control channel, on one node (a cluster delivers a PUBLISH on every
// node). When that node stops answering, another master that does takes over.
void RedisPresence::subscribe(const RedisAddress& address) {
    subscriber_ = std::make_unique<RedisLink>(
        *loop_, address, reply_timeout(publisher_.config().ttl),
        RedisLink::Callbacks{[this] {
                                 subscriber_->send({{"SUBSCRIBE", publisher_.control_channel()}, kControlTag});
                             },
                             [this](const std::string&) {  // The router reports Redis' state.
                                 loop_->post([this] {      // Not inside the link's own callback.
                                     const std::optional<RedisAddress> other = router_->ready_node();
                                     if (subscriber_->ready() || !other ||
                                         other->to_string() == subscriber_->address().to_string())
                                         return;
                                     subscribe(*other);
                                     subscriber_->start();
                                 });
                             },
                             [this](std::uint64_t, const RedisValue& v) {
                                 if (v.elements.size() == 3) publisher_.on_control(v.elements[2].text);
                                 pump();
                             }});
}

RedisPresence::~RedisPresence() {
    if (thread_.joinable()) {
        loop_->stop();
        thread_.join();
    }
    router_.reset();
    subscriber_.reset();
    loop_->cancel(*this);
}

void RedisPresence::start() {
    loop_->post([this] {
        router_->start();
        subscriber_->start();
    });
    thread_ = std::thread([this] { loop_->run(); });
}

void RedisPresence::finish(Duration grace) {
    loop_->post([this, grace] {
        finishing_ = true;
        finish_by_ = loop_->now() + grace;
        pump();
    });
    thread_.join();
}

void RedisPresence::online(const std::string& id, std::uint64_t conn, const std::string& peer) {
    const std::int64_t now = unix_ms_now();
    loop_->post([this, id, conn, peer, now] {
        publisher_.online(id, conn, peer, now);
        pump();
    });
}

void RedisPresence::offline(const std::string& id, std::uint64_t conn, DisconnectReason reason,
                            std::int64_t detected_after_ms) {
    const std::int64_t now = unix_ms_now();
    loop_->post([this, id, conn, reason, detected_after_ms, now] {
        publisher_.offline(id, conn, reason, detected_after_ms, now);
        pump();
    });
}

void RedisPresence::on_timer() {
    publisher_.handle_timeout(loop_->now(), unix_ms_now());
    pump();
}

void RedisPresence::pump() {
    for (const RedisCommand& c : publisher_.take_commands()) router_->send(c);
    for (const PresenceNotice& n : publisher_.take_notices()) handle_notice(n);
    publish_metrics();
    Instant next = publisher_.next_timeout();
    if (finishing_) {
        const bool drained = publisher_.in_flight() == 0 && publisher_.queued() == 0;
        if (drained || loop_->now() >= finish_by_) {  // Redis away: the grace is its chance to come back.
            loop_->stop();
            return;
        }
        next = std::min(next, finish_by_);
    }
    if (next != Instant::never()) loop_->schedule(*this, next);
}

void RedisPresence::publish_metrics() {
    ServerMetrics::Presence& m = server_.metrics.presence;
    const PresencePublisherCounters& c = publisher_.counters();
    auto set = [](std::atomic<std::uint64_t>& to, std::uint64_t v) { to.store(v, std::memory_order_relaxed); };
    m.enabled.store(true, std::memory_order_relaxed);
    set(m.redis_up, publisher_.connected() ? 1 : 0);
    set(m.live, publisher_.live());
    set(m.queued, publisher_.queued());
    set(m.commands_total, c.commands);
    set(m.dropped_total, c.dropped);
    set(m.errors_total, c.errors);
    set(m.fenced_out_total, c.fenced_out);
    set(m.reaped_total, c.reaped);
    set(m.reconnects_total, c.reconnects);
}

void RedisPresence::handle_notice(const PresenceNotice& n) {
    if (n.kind == PresenceNotice::Kind::error) {
        Event e;
        e.kind = EventKind::error;
        e.client_id = n.id;
        e.message = "presence: " + n.message;
        server_.emit(e);
        return;
    }
    std::optional<ConnectionRef> holder;
    {
        std::lock_guard lock(server_.sessions_mutex);
        holder = server_.sessions.find(n.id);
    }
    if (!holder || holder->conn != n.conn) return;  // Already gone.
    if (n.kind == PresenceNotice::Kind::replaced) {
        server_.close_connection(*holder, DisconnectReason::session_replaced, CloseCode::session_replaced,
                                 "the same client connected to another gateway");
    } else {
        server_.close_connection(*holder, DisconnectReason::gateway_lost, CloseCode::session_replaced,
                                 "the fleet declared this session gone while Redis could not hear from us");
    }
}

}  // namespace lifeline::runtime
