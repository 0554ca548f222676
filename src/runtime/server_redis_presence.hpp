// The server's fleet presence on Redis (ServerOptions::presence_redis): a
// PresencePublisher and its Redis connections (commands, through a
// RedisRouter: one redis-server or every master of a cluster; and the
// subscription to this gateway's control channel, on the seed node) on a loop and thread of
// their own, so a slow or absent Redis never touches a connection's loop.
// Internal to src/runtime.
//
// Threads: online()/offline() from any thread (they post to the presence
// loop); start() and finish() from the thread that runs the server.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "lifeline/engine/presence_publisher.hpp"
#include "lifeline/server.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/redis_link.hpp"
#include "runtime/redis_router.hpp"

namespace lifeline::runtime {

class RedisPresence : public LoopObject {
public:
    static Result<std::unique_ptr<RedisPresence>> create(Server::Impl& server);
    ~RedisPresence() override;

    void start();
    // After the workers stopped: sends what is left (at most `grace`), then stops.
    void finish(Duration grace);

    void online(const std::string& id, std::uint64_t conn, const std::string& peer);
    void offline(const std::string& id, std::uint64_t conn, DisconnectReason reason, std::int64_t detected_after_ms);

    void on_io(std::uint32_t) override {}
    void on_timer() override;

private:
    RedisPresence(Server::Impl& server, std::unique_ptr<EventLoop> loop, RedisAddress address,
                  PresencePublisherConfig config);
    void subscribe(const RedisAddress& address);
    void pump();  // Commands to Redis, notices to the server, the timer re-armed.
    void handle_notice(const PresenceNotice& n);
    void publish_metrics();  // The publisher's counters into the server's /metrics.

    Server::Impl& server_;
    std::unique_ptr<EventLoop> loop_;
    PresencePublisher publisher_;
    std::unique_ptr<RedisRouter> router_;
    std::unique_ptr<RedisLink> subscriber_;
    std::thread thread_;
    bool finishing_ = false;
    Instant finish_by_ = Instant::never();
    std::string last_error_;  // Reported once, not once per retry.
};

}  // namespace lifeline::runtime
