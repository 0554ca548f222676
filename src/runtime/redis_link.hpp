// One connection to Redis through hiredis' async API, driven by our EventLoop
// (hiredis' event hooks map onto epoll interest on the context's fd). It
// reconnects by itself with capped exponential backoff, and counts a Redis
// that accepts but does not answer (SIGSTOPped, swapping) as down: a command
// unanswered for `reply_timeout` drops the connection. `ready` comes after the
// first PONG, so a Redis that only its kernel answers for is never "up".
// Internal to src/runtime. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "lifeline/engine/presence_publisher.hpp"
#include "lifeline/result.hpp"
#include "runtime/event_loop.hpp"

struct redisAsyncContext;
struct redisReply;

namespace lifeline::runtime {

// redis://HOST:PORT[/DB] (HOST an IPv4 address or a name; PORT default 6379).
struct RedisAddress {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string to_string() const;
};
Result<RedisAddress> parse_redis_url(std::string_view url);

class RedisLink : public LoopObject {
public:
    struct Callbacks {
        std::function<void()> ready;                                      // Connected, and Redis answers.
        std::function<void(const std::string& why)> down;                 // Lost (a reconnect follows).
        std::function<void(std::uint64_t tag, const RedisValue&)> reply;  // Subscriptions: once per message.
    };
    RedisLink(EventLoop& loop, RedisAddress address, Duration reply_timeout, Callbacks callbacks);
    ~RedisLink() override;
    RedisLink(const RedisLink&) = delete;
    RedisLink& operator=(const RedisLink&) = delete;

    void start();  // Connects (and keeps reconnecting).
    // False when not ready (nothing is sent).
    bool send(const RedisCommand& command);
    bool ready() const { return ready_; }
    const RedisAddress& address() const { return address_; }

    void on_io(std::uint32_t events) override;
    void on_timer() override;

private:
    static void on_connect(const redisAsyncContext* ac, int status);
    static void on_disconnect(const redisAsyncContext* ac, int status);
    static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
    static void add_read(void* self);
    static void del_read(void* self);
    static void add_write(void* self);
    static void del_write(void* self);
    static void cleanup(void* self);

    void connect();
    void update_interest();
    void lost(const std::string& why);  // Frees the context (outside hiredis' callbacks) and retries.
    void arm_timer();

    EventLoop& loop_;
    RedisAddress address_;
    Duration reply_timeout_;
    Callbacks callbacks_;
    redisAsyncContext* context_ = nullptr;
    int fd_ = -1;
    bool registered_ = false;
    bool want_read_ = false;
    bool want_write_ = false;
    bool ready_ = false;
    std::string refused_;            // Why Redis refused SELECT or PING: the timer drops the connection.
    std::uint64_t outstanding_ = 0;  // Commands sent, replies not yet in (subscriptions excluded).
    Instant last_progress_;          // Last reply (or the send that made outstanding_ non-zero).
    Duration backoff_ = Duration::milliseconds(100);
    Instant retry_at_ = Instant::never();
};

}  // namespace lifeline::runtime
