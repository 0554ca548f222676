// The lifeline client: keeps one or more framed connections to a server alive
// with heartbeats, notices a dead server, and (optionally) reconnects with
// exponential backoff and full jitter.
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
// it. stop() and send() may be called from any thread.
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

struct ClientOptions {
    std::string server = "127.0.0.1:8888";
    std::string id;                             // Sent in HELLO; the server assigns one if empty.
    Duration heartbeat = Duration::seconds(1);  // Requested interval (the server may clamp it).
    Duration timeout = Duration::seconds(3);    // Requested timeout (the server may clamp it).
    KeepalivePolicy keepalive;
    int count = 1;                              // Parallel connections (ids get "-N" suffixes).
    bool reconnect = false;
    Duration backoff_initial = Duration::milliseconds(100);
    Duration backoff_max = Duration::seconds(10);
    Duration connect_timeout = Duration::seconds(5);  // TCP connect + WELCOME.
    std::size_t output_budget = 1 << 20;
    std::size_t max_body_size = 64 * 1024;
    Duration tick = Duration::milliseconds(10);
    std::uint64_t seed = 0;                     // Backoff jitter; 0 = from the OS.

    Result<void> validate() const;
};

struct ClientCallbacks {
    std::function<void(const Event&)> on_event;
    std::function<void(int connection)> on_connect;  // WELCOME received
    std::function<void(int connection, std::span<const std::uint8_t> payload)> on_message;
    std::function<void(int connection, DisconnectReason reason)> on_down;
    std::function<void(int connection, Duration rtt)> on_rtt;
};

class Client {
public:
    static Result<std::unique_ptr<Client>> create(const ClientOptions& options, ClientCallbacks callbacks);
    ~Client();

    void run();
    // Thread-safe: sends CLOSE on open connections and makes run() return.
    void stop();
    // Thread-safe: queues `payload` as one DATA frame on `connection` (dropped if it is not open).
    void send(int connection, std::span<const std::uint8_t> payload);

    struct Impl;

private:
    explicit Client(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline
