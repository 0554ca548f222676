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
#include <span>
#include <string>
#include <string_view>

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
    // Timer wheel resolution: a silent peer is declared dead at most about
    // this long after its timeout. Fine ticks cost wake-ups only while timers
    // are expiring: a healthy peer pushes its deadline ahead and never fires.
    Duration tick = Duration::milliseconds(1);
    Duration stall_threshold = Duration::milliseconds(250);
    std::string http;  // "127.0.0.1:9100": serve /metrics and /connections ("" = off)

    // Checks ranges and consistency; errors name the option.
    Result<void> validate() const;
};

struct ServerCallbacks {
    // Every event, from any loop thread (make it thread-safe).
    std::function<void(const Event&)> on_event;
    // DATA payload (framed) or bytes (raw), on the connection's loop thread.
    std::function<void(std::uint64_t conn, std::span<const std::uint8_t> payload)> on_message;
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

    struct Impl;

private:
    friend struct testing::Access;  // lifeline/testing.hpp's fault injection.
    explicit Server(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline
