// The lifeline server: holds many long-lived TCP connections and reports,
// within the budget you choose, when a peer is gone and why.
//
//   lifeline::ServerOptions options;
//   options.listen = "0.0.0.0:8888";
//   auto server = lifeline::Server::create(options, {.on_event = print});
//   if (!server) { ...server.error().message... }
//   (*server)->run();            // blocks until stop(); call stop() from any thread
//
// Threads: run() starts `threads` event loops (the calling thread runs one),
// each with its own SO_REUSEPORT listener; callbacks run on loop threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "lifeline/connection.hpp"
#include "lifeline/engine/presence.hpp"
#include "lifeline/events.hpp"
#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

namespace testing {
struct Access;
}

enum class ServerMode : std::uint8_t {
    framed,  // docs/PROTOCOL.md: HELLO/WELCOME, PING/PONG, DATA, CLOSE.
    raw,     // No protocol: any TCP client. Kernel keepalive + user timeout (+ idle timeout).
    // RFC 6455 WebSocket (browsers, any WebSocket client): the server pings
    // when quiet and judges silence past `timeout` (heartbeat_timeout); the
    // id from `?id=` in the upgrade's target. No on_hello admission yet.
    websocket,
};

// How a server's event loops do connection I/O.
enum class IoBackend : std::uint8_t {
    epoll,  // Readiness + one recv and one send per message: portable, the default.
    uring,  // io_uring (Linux 6.1+, liburing): no system call per connection,
            // one io_uring_enter per loop turn. Server::create() fails with the
            // kernel's reason where io_uring is unavailable or disabled.
};

struct ServerOptions {
    std::string listen = "0.0.0.0:8888";  // IPv4 "a.b.c.d:port" or IPv6 "[::1]:port"; port 0 = any
    ServerMode mode = ServerMode::framed;
    Duration heartbeat = Duration::seconds(1);            // Interval granted when the client asks for 0.
    Duration timeout = Duration::seconds(3);              // Timeout granted when the client asks for 0.
    Duration min_interval = Duration::milliseconds(100);  // Slowest allowed PING rate (abuse protection).
    Duration max_timeout = Duration::hours(1);
    Duration handshake_timeout = Duration::seconds(5);  // HELLO must arrive within this, from accept.
    Duration idle_timeout = Duration::zero();           // raw mode: close after this long without bytes (0 = off)
    bool server_pings = false;                          // The server also sends PINGs when quiet.
    KeepalivePolicy keepalive;                          // Applied to every accepted socket.
    // True: set no keepalive option and no user timeout at all; accepted
    // sockets keep what the kernel (or an outside tool: `lifeline run`,
    // `protect`, a BPF program) gives them. `keepalive` is then disabled().
    bool keepalive_from_outside = false;
    int threads = 1;
    IoBackend io = IoBackend::epoll;
    // Output backpressure. With more than the budget queued for a peer, the
    // server stops reading from it (so it stops echoing into it) and pushing
    // to it, until the queue is down to half. A peer that keeps more than the
    // budget queued for `slow_consumer_after` is judged by the kernel's view of the socket
    // (tcp_info, docs/TUNING.md): alive and not reading (a zero window, window
    // probes answered) is closed as slow_consumer; a dead path (data
    // retransmitted, no ACK) is left to TCP_USER_TIMEOUT (user_timeout),
    // keepalive or heartbeats, which say what really happened.
    std::size_t output_budget = 1 << 20;
    // Zero: the detection budget in force (framed: the connection's heartbeat
    // timeout; raw: --idle-timeout, else the keepalive budget, else `timeout`),
    // and at most half the user timeout, so that the verdict on a live peer
    // behind a zero window is ours and not the kernel's abort racing it.
    Duration slow_consumer_after = Duration::zero();
    std::size_t max_body_size = 64 * 1024;
    std::size_t max_connections = 1'000'000;
    bool echo = false;  // Echo DATA (framed) or bytes (raw) back.
    // Both set: TLS (1.2+) on every connection, in any mode (wss:// in
    // websocket mode). PEM files, loaded and checked by Server::create(). The
    // TLS handshake must finish within handshake_timeout of accept, in every mode.
    std::string tls_cert;
    std::string tls_key;
    // Keep presence of client-chosen ids (Server::presence, GET /presence, the
    // `offline` event). It costs a record per id (docs/BENCHMARKS.md, memory).
    bool presence = true;
    // Fleet presence on Redis (docs/PROTOCOL.md, "Fleet presence on Redis"):
    // "redis://HOST:PORT[/DB]" publishes every chosen id's online/offline,
    // fenced by epoch, to Redis >= 7 ("" = embedded presence only). Detection
    // never waits for Redis: while it is away, updates are buffered (at most
    // presence_buffer offline events) and the live set is re-asserted when it
    // returns. presence_gateway names this server in the fleet (default
    // HOSTNAME:PORT); presence_ttl is the TTL of each live entry and of the
    // gateway's heartbeat key (refreshed every ttl/3, in batches).
    std::string presence_redis;
    std::string presence_gateway;
    Duration presence_ttl = Duration::seconds(30);
    Duration presence_retention = Duration::hours(24);
    std::string presence_stream = "lifeline:offline";
    std::size_t presence_buffer = 100'000;
    // Timer wheel resolution: a silent peer is declared dead at most about
    // this long after its timeout. Fine ticks cost wake-ups only while timers
    // are expiring: a healthy peer pushes its deadline ahead and never fires.
    Duration tick = Duration::milliseconds(1);
    Duration stall_threshold = Duration::milliseconds(250);
    // Wake-up coalescing (0 = off): while every wake-up of a loop finds more
    // than one event ready, its next wait starts at least this long after the
    // last one began, so a wake-up serves many heartbeats instead of one or
    // two (less CPU per heartbeat under load; at most this much more latency,
    // only while busy; timers are not delayed). At most 100 ms.
    Duration coalesce = Duration::milliseconds(1);
    std::string http;  // "127.0.0.1:9100": serve /metrics and /connections ("" = off)

    // Checks ranges and consistency; errors name the option.
    Result<void> validate() const;
};

// The default presence_gateway: "HOSTNAME:PORT" of a listen address.
std::string default_presence_gateway(std::string_view listen_address);

// Callbacks run on the connection's own loop thread (one connection's always
// on the same thread, in order); make shared state thread-safe when threads > 1.
// A callback that throws is caught: an `error` event says so, and only that
// connection is closed (local_close). One that blocks stalls its whole loop
// (the stall guard reports it: lifeline_loop_stalls_total).
struct ServerCallbacks {
    // Every event, from any loop thread (make it thread-safe).
    std::function<void(const Event&)> on_event;
    // Framed: a HELLO arrived; admit or reject it before anything else
    // happens (the client waits for its WELCOME meanwhile). Empty:
    // default_admission (lifeline/connection.hpp). Not called in raw mode.
    std::function<Admission(const HelloInfo&)> on_hello;
    // Admitted (framed: WELCOME sent; raw: accepted). Exactly one on_close follows.
    std::function<void(ConnectionId conn)> on_open;
    // DATA payload (framed) or bytes (raw).
    std::function<void(ConnectionId conn, std::span<const std::uint8_t> payload)> on_message;
    // An admitted connection ended, once, with the reason its `closed` event
    // carries. By then find() no longer returns it (its id is free).
    std::function<void(ConnectionId conn, DisconnectReason reason, const std::string& detail)> on_close;
    // A send() returned `full` and the queue has since drained to half the budget.
    std::function<void(ConnectionId conn)> on_writable;
};

class Server {
public:
    // Binds the listeners (so the port is known and errors surface here).
    static Result<std::unique_ptr<Server>> create(const ServerOptions& options, ServerCallbacks callbacks);
    ~Server();

    // Runs the loops until stop(); then stops accepting, sends CLOSE to framed
    // peers, flushes for at most 1.5 s, closes everything with reason
    // `shutdown`, and returns.
    void run();
    // Thread-safe; not async-signal-safe (use a signal thread, as the CLI does).
    void stop();
    // The bound address, e.g. "127.0.0.1:40331" when port 0 was asked for.
    std::string local_address() const;
    // Prometheus text (the /metrics body). Thread-safe.
    std::string metrics_text() const;
    // JSON array of the open connections (the /connections body). Thread-safe; asks each loop.
    std::string connections_json() const;

    // ---- The gateway API --------------------------------------------------
    // Every call below may be made from any thread. On the connection's own
    // loop thread (in its callbacks) it acts at once and its result is exact;
    // from elsewhere it is posted to that loop (an eventfd wakes it) and acts
    // there in order: send() then says `queued`, and failures that only the
    // loop can see (the connection closed meanwhile) are dropped silently.
    // Errors: not_open (no such connection, or it is closed), too_large (a
    // payload over max_body_size), invalid_argument (a bad handle or code).

    // One DATA frame (raw: the bytes). Control frames (PONG, CLOSE) still go
    // first. Never blocks: `full` when more than output_budget is queued.
    Result<SendStatus> send(ConnectionId conn, std::span<const std::uint8_t> payload);
    // Ends it with CLOSE `code` (framed), then on_close with local_close.
    Result<void> close(ConnectionId conn, std::uint16_t code = 0, std::string text = "");
    // The open connection that holds `client_id` (the id from its HELLO, or
    // the c<number> the server assigned), if any. A snapshot: by the time it
    // is used the connection may have closed (send() then says not_open).
    std::optional<ConnectionId> find(std::string_view client_id) const;
    // Sends one DATA frame to every open connection for which `filter` (run on
    // each connection's loop) says yes; empty = all. The frame is encoded once
    // per loop and every loop writes it within one turn. Returns how many
    // loops it was handed to; counts per connection are in the metrics.
    std::size_t broadcast(std::span<const std::uint8_t> payload, std::function<bool(ConnectionId conn)> filter = {});
    // Runs `fn(conn)` for every open connection, each on its own loop (so
    // `fn` may call send(), context()...). Returns at once.
    void for_each(std::function<void(ConnectionId conn)> fn);
    // Runs `fn` on `conn`'s loop (even after it closed: check with stats()).
    Result<void> post(ConnectionId conn, std::function<void()> fn);
    // One pointer of the application's per connection, on its loop thread
    // only (elsewhere: nullptr, and set_context() fails with invalid_argument).
    // The server never reads or frees it; clear it in on_close.
    Result<void> set_context(ConnectionId conn, void* context);
    void* context(ConnectionId conn) const;
    // On the connection's loop: at once. From a thread that is not one of the
    // server's loops: asks that loop and waits for the answer. From another
    // loop: invalid_argument (waiting there could deadlock two loops).
    Result<ConnectionStats> stats(ConnectionId conn) const;
    // Presence of an id a client chose (server-assigned c<number> ids have
    // none): online or not, its epoch (+1 at every admission), since when
    // (Unix ms), and why it last went offline. Offline records are kept 24 h.
    // Thread-safe; the same as GET /presence/{id} on the http endpoint.
    std::optional<PresenceRecord> presence(std::string_view client_id) const;
    // Takes over a connected TCP socket accepted elsewhere (an acceptor of
    // your own, systemd's LISTEN_FDS, one received over a Unix socket): the
    // same keepalive and user-timeout policy as an accepted one, on the
    // least-loaded loop. The server owns `fd` from here, on success or not.
    // Errors: invalid_argument (not a connected TCP socket), the policy's errors.
    Result<void> adopt(int fd);

    struct Impl;

private:
    friend struct testing::Access;  // lifeline/testing.hpp's fault injection.
    explicit Server(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline
