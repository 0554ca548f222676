// The lifeline client: keeps one or more framed connections to a server alive
// with heartbeats, notices a dead server, and (optionally) reconnects with
// exponential backoff and full jitter. In raw mode it is a plain TCP client
// instead (no protocol, only kernel keepalive and TCP_USER_TIMEOUT), the
// counterpart of `lifeline serve --mode raw`. In WebSocket mode it speaks RFC
// 6455 to `serve --mode websocket`; with `tls`, any mode runs over TLS.
//
//   lifeline::ClientOptions options;
//   options.server = "127.0.0.1:8888";
//   options.id = "sensor-17";
//   lifeline::ClientCallbacks callbacks;
//   callbacks.on_down = [](int, lifeline::DisconnectReason r) { ... };
//   auto client = lifeline::Client::create(options, callbacks);
//   (*client)->run();   // until stop(), or until every connection ended without --reconnect
//
// Threads: run() drives one event loop on the calling thread; callbacks run on
// it. stop() and send() may be called from any thread. Fault injection for
// labs and tests (silence, hung readers) is in lifeline/testing.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lifeline/events.hpp"
#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

namespace testing {
struct Access;
}

enum class ClientMode : std::uint8_t {
    framed,     // docs/PROTOCOL.md: HELLO/WELCOME, PING/PONG, DATA, CLOSE; the client judges the server.
    raw,        // Plain TCP: no handshake, no heartbeats, no liveness timer; only the kernel
                // (keepalive, TCP_USER_TIMEOUT) notices a dead server. Pairs with `serve --mode raw`.
    websocket,  // RFC 6455 to `serve --mode websocket`: the same rules over an upgrade and
                // ping/pong frames (lifeline/engine/client_session.hpp); the client judges the server.
};

struct ClientOptions {
    std::string server = "127.0.0.1:8888";
    ClientMode mode = ClientMode::framed;
    std::string id;  // Sent in HELLO; the server assigns one if empty (raw: events only).
    // Sent in HELLO for the server's admission check (at most 255 bytes), e.g.
    // an HMAC of the id. With an id, each connection also keeps the resume
    // token its last WELCOME issued and presents it when it reconnects, so
    // the server lets it replace its own stale connection (docs/PROTOCOL.md).
    std::string credential;
    Duration heartbeat = Duration::seconds(1);  // Requested interval (the server may clamp it). Framed only.
    // Requested timeout, framed only. The server may clamp what it grants (and
    // judges us by that), but the client judges the server by the longer of
    // this and the granted timeout: its own patience is its own business.
    Duration timeout = Duration::seconds(3);
    KeepalivePolicy keepalive;
    int count = 1;  // Parallel connections (ids get "-N" suffixes).
    bool reconnect = false;
    Duration backoff_initial = Duration::milliseconds(100);
    Duration backoff_max = Duration::seconds(10);
    Duration connect_timeout = Duration::seconds(5);  // TCP connect + WELCOME (raw: the TCP connect only).
    std::size_t output_budget = 1 << 20;
    std::size_t max_body_size = 64 * 1024;
    Duration tick = Duration::milliseconds(10);
    std::uint64_t seed = 0;  // Backoff jitter; 0 = from the OS.
    // Source addresses to bind before connecting ("127.0.0.2"), used round
    // robin by connection index; empty = the kernel picks. Each source has its
    // own ephemeral port range towards the server.
    std::vector<std::string> source_addresses;
    double ramp_per_second = 0;  // First connects spread at this rate (0 = all at once).
    // Each connection's first connect waits a further uniformly random
    // [0, start_jitter) (drawn from `seed`), so connections opened together
    // do not heartbeat in step: with start_jitter = heartbeat, each one's
    // PINGs keep an independent, uniformly random phase. 0 = none.
    Duration start_jitter = Duration::zero();
    // WebSocket: the request path; id, credential and resume token are added
    // to its query. The Host header is websocket_host, else `server`.
    std::string websocket_path = "/";
    std::string websocket_host;
    // TLS (any mode): verify the server's certificate against tls_ca (PEM;
    // empty: the system's trust store) for tls_server_name (empty: the host
    // of `server`, an IP address).
    bool tls = false;
    std::string tls_ca;
    std::string tls_server_name;

    // Checks ranges and consistency (heartbeat and timeout only where there
    // is a protocol); errors name the option. Files (tls_ca) are read by create().
    Result<void> validate() const;
};

struct ClientCallbacks {
    std::function<void(const Event&)> on_event;
    std::function<void(int connection)> on_connect;  // WELCOME received (raw: TCP connect completed)
    // A DATA payload (framed) or the bytes of one read (raw).
    std::function<void(int connection, std::span<const std::uint8_t> payload)> on_message;
    std::function<void(int connection, DisconnectReason reason)> on_down;
    // An attempt ended before the connection opened: connect error, no
    // WELCOME in time, or closed during the handshake.
    std::function<void(int connection, DisconnectReason reason, const std::string& message)> on_connect_failed;
    std::function<void(int connection, Duration rtt)> on_rtt;
};

class Client {
public:
    static Result<std::unique_ptr<Client>> create(const ClientOptions& options, ClientCallbacks callbacks);
    ~Client();

    void run();
    // Thread-safe: sends CLOSE on open connections and makes run() return.
    void stop();
    // Thread-safe: queues `payload` as one DATA frame (raw: as plain bytes) on
    // `connection` (dropped if it is not open).
    void send(int connection, std::span<const std::uint8_t> payload);
    struct Impl;

private:
    friend struct testing::Access;  // lifeline/testing.hpp's fault injection.
    explicit Client(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline
