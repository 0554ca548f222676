// The publisher's commands to one redis-server or to the masters of a Redis
// Cluster, found from the seed address: CLUSTER SLOTS on the seed (an error
// there means a plain redis-server), then one RedisLink per master. Ready when
// every master answers; down when any does not. A MOVED or CLUSTERDOWN reply
// (or a function told a key is not on its node) means the slot map changed:
// the router reports it down and, a second later (doubling while it goes
// on), reads the map again, and the publisher resends its state (every write
// is idempotent).
// Internal to src/runtime. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "lifeline/engine/presence_publisher.hpp"
#include "runtime/redis_link.hpp"

namespace lifeline::runtime {

class RedisRouter : public LoopObject {
public:
    struct Callbacks {
        // Every master answers. The slot map (node per slot), empty for one redis-server.
        std::function<void(std::vector<std::uint16_t> node_of_slot)> ready;
        std::function<void(const std::string& why)> down;
        std::function<void(std::uint64_t tag, const RedisValue&)> reply;
    };
    RedisRouter(EventLoop& loop, RedisAddress seed, Duration reply_timeout, Callbacks callbacks);
    ~RedisRouter() override { loop_.cancel(*this); }
    RedisRouter(const RedisRouter&) = delete;
    RedisRouter& operator=(const RedisRouter&) = delete;

    void start();
    // To the node of command.route (every master if every_node). False if not ready.
    bool send(const RedisCommand& command);
    bool ready() const { return ready_; }
    bool cluster() const { return !node_of_slot_.empty(); }
    const RedisAddress& seed() const { return seed_->address(); }
    // A master that answers now (for the subscription, when the seed does not).
    std::optional<RedisAddress> ready_node() const;

    void on_io(std::uint32_t) override {}
    void on_timer() override { on_link_ready(); }  // The hold after a redirection is over.

private:
    struct Broadcast {
        std::size_t waiting = 0;
        RedisValue reply;  // The first error, or the last reply.
    };
    void on_link_ready();
    void on_link_down(const std::string& key, const std::string& why);
    void on_link_reply(std::uint64_t tag, const RedisValue& v);
    void on_slots(const RedisValue& v);
    void become_ready();
    // HOLD: wait this long before reading the map again (a cluster that keeps
    // redirecting must not make the gateway resend its state in a loop).
    void lose(const std::string& why, Duration hold = Duration::zero());
    std::unique_ptr<RedisLink> make_link(RedisAddress address);
    RedisLink& link_of(const std::string& route);

    EventLoop& loop_;
    Duration reply_timeout_;
    Callbacks callbacks_;
    std::unique_ptr<RedisLink> seed_;
    std::vector<std::unique_ptr<RedisLink>> masters_;  // Besides the seed, when it is not one.
    std::vector<std::unique_ptr<RedisLink>> retired_;  // Left the map; freed at the next one.
    std::vector<RedisLink*> nodes_;                    // Node index -> its link (the seed's when one node).
    std::vector<std::uint16_t> node_of_slot_;          // Empty: one redis-server.
    std::unordered_map<std::uint64_t, Broadcast> broadcasts_;
    bool mapped_ = false;      // The slot map was read since the last loss.
    bool querying_ = false;    // CLUSTER SLOTS in flight.
    std::uint64_t query_ = 0;  // Which one (its tag's low bits).
    bool ready_ = false;
    Instant hold_until_ = Instant::from_ns(0);
    Duration remap_hold_ = Duration::seconds(1);
    Instant last_remap_ = Instant::from_ns(0);
};

}  // namespace lifeline::runtime
