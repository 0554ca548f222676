// The client load engine: the real lifeline::Client (framed or WebSocket,
// plaintext or TLS), one per thread.
#include <mutex>

#include "lifeline/client.hpp"
#include "lifeline/testing.hpp"
#include "loadgen/load_engine.hpp"
#include "runtime/monotonic_clock.hpp"

namespace lifeline::loadgen {

Result<std::unique_ptr<LoadEngine>> make_raw_engine(const LoadOptions& options);  // raw_engine.cpp

namespace {

class FramedEngine final : public LoadEngine {
public:
    static Result<std::unique_ptr<LoadEngine>> create(const LoadOptions& o) {
        auto engine = std::unique_ptr<FramedEngine>(new FramedEngine(o));
        ClientOptions c;
        c.server = o.server;
        c.mode = o.protocol == Protocol::websocket ? ClientMode::websocket : ClientMode::framed;
        c.tls = o.tls;
        c.tls_ca = o.tls_ca;
        c.heartbeat = o.heartbeat;
        c.timeout = o.timeout;
        c.count = o.connections;
        c.keepalive = KeepalivePolicy::disabled();  // The server's heartbeats are what is measured.
        c.source_addresses = o.sources;
        c.ramp_per_second = o.ramp_per_second;
        c.seed = o.seed;
        // What the server keeps per id (its id map, the presence table) is part of what is measured.
        if (o.send_id) c.id = client_id_base(o.seed);
        if (o.arrivals == Arrivals::uniform) {
            c.tick = kUniformTick;
            c.start_jitter = o.heartbeat;
        }
        c.reconnect = o.reconnect;
        c.backoff_initial = Duration::milliseconds(100);
        c.backoff_max = Duration::seconds(5);
        FramedEngine* self = engine.get();
        ClientCallbacks callbacks;
        callbacks.on_connect = [self](int conn) { self->on_connect(conn); };
        callbacks.on_rtt = [self](int, Duration rtt) { self->on_round_trip(rtt); };
        callbacks.on_down = [self](int conn, DisconnectReason reason) { self->on_down(conn, reason); };
        testing::ClientFaults faults;
        faults.on_silenced = [self](int conn, Instant now, Instant last_sent) {
            self->on_silenced(conn, now, last_sent);
        };
        callbacks.on_connect_failed = [self](int, DisconnectReason, const std::string& message) {
            if (!self->stopping_.load()) self->on_connect_failure(message);
        };
        Result<std::unique_ptr<Client>> client = testing::create_client(c, std::move(callbacks), std::move(faults));
        if (!client) return client.error();
        engine->client_ = std::move(*client);
        return std::unique_ptr<LoadEngine>(std::move(engine));
    }

    void run() override { client_->run(); }
    void stop() override {
        stopping_.store(true);
        client_->stop();
    }

    void silence(double fraction) override {
        for (int i = 0; i < options_.connections; ++i) {
            if (is_silenced(static_cast<std::uint64_t>(i), fraction)) testing::silence(*client_, i);
        }
    }

    LoadStats stats() const override {
        std::lock_guard lock(mutex_);
        LoadStats s = stats_;
        s.round_trips = round_trips_.load(std::memory_order_relaxed);
        return s;
    }

private:
    explicit FramedEngine(const LoadOptions& o)
        : options_(o),
          silenced_at_(static_cast<std::size_t>(o.connections)),
          last_sent_(static_cast<std::size_t>(o.connections)),
          drops_(static_cast<std::size_t>(o.connections)) {}

    // Loop thread. The session times each PING from the turn that sent it to the turn that read its PONG.
    void on_round_trip(Duration rtt) {
        std::lock_guard lock(mutex_);
        round_trips_.fetch_add(1, std::memory_order_relaxed);
        stats_.round_trip_latency.record_ns(rtt.ns());
    }

    // Loop thread.
    void on_connect(int conn) {
        const bool back = drops_[static_cast<std::size_t>(conn)] > 0;
        const std::int64_t now = clock_.now().ns_since_epoch();
        std::lock_guard lock(mutex_);
        ++stats_.open;
        if (!back) {
            ++stats_.connected;
            return;
        }
        ++stats_.reconnected;
        stats_.last_reconnect_ns = now;
    }

    void on_connect_failure(const std::string& message) {
        std::lock_guard lock(mutex_);
        ++stats_.connect_failures;
        if (stats_.first_error.empty()) stats_.first_error = message;
    }

    // Loop thread.
    void on_silenced(int conn, Instant now, Instant last_sent) {
        silenced_at_[static_cast<std::size_t>(conn)] = now;
        last_sent_[static_cast<std::size_t>(conn)] = last_sent;
        std::lock_guard lock(mutex_);
        ++stats_.silenced;
    }

    // Loop thread.
    void on_down(int conn, DisconnectReason reason) {
        const Instant now = clock_.now();
        const Instant silenced = silenced_at_[static_cast<std::size_t>(conn)];
        std::lock_guard lock(mutex_);
        --stats_.open;
        // Our own stop() closes everything: not the server's doing.
        if (stopping_.load() || reason == DisconnectReason::local_close) return;
        if (!silenced.is_set()) {
            std::uint8_t& drops = drops_[static_cast<std::size_t>(conn)];
            if (options_.reconnect && drops == 0) {
                // The storm itself: this connection's first loss.
                drops = 1;
                ++stats_.drops;
                if (stats_.first_drop_ns == 0) stats_.first_drop_ns = now.ns_since_epoch();
                return;
            }
            ++stats_.false_closes;
            return;
        }
        stats_.detect_after_silence_ns.push_back((now - silenced).ns());
        stats_.detect_after_last_send_ns.push_back((now - last_sent_[static_cast<std::size_t>(conn)]).ns());
    }

    LoadOptions options_;
    std::unique_ptr<Client> client_;
    MonotonicClock clock_;
    std::vector<Instant> silenced_at_;  // Loop thread only.
    std::vector<Instant> last_sent_;    // Loop thread only.
    std::vector<std::uint8_t> drops_;   // Loop thread only: 1 once a connection was lost (reconnect mode).
    std::atomic<std::uint64_t> round_trips_{0};
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;
    LoadStats stats_;
};

}  // namespace

Result<std::unique_ptr<LoadEngine>> make_engine(const LoadOptions& options) {
    if (options.protocol == Protocol::framed || options.protocol == Protocol::websocket)
        return FramedEngine::create(options);
    if (options.tls) return Error{"TLS needs the framed or websocket protocol"};
    return make_raw_engine(options);
}

}  // namespace lifeline::loadgen
