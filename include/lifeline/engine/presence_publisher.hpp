// Fleet presence on Redis, sans I/O: one gateway's side of the protocol in
// docs/PROTOCOL.md ("Fleet presence on Redis"). The publisher turns session
// events into Redis commands (FCALLs of the `lifeline` function library, which
// fences every write by the id's epoch inside Redis) and Redis replies into
// notices for the server (close a ghost that another gateway took over).
// One redis-server or a Redis Cluster: each command names the key whose slot
// picks its node (`route`), and commands about many ids are grouped by the
// node that holds them (on_topology()).
//
//   driver:  connect to Redis (every master) -> on_topology() if a cluster,
//            then on_connected(); each command from take_commands() -> send it
//            to its route's node (to every master if `every_node`), and its
//            reply -> on_reply(tag, value); a lost connection -> on_disconnected();
//            a message on control_channel() -> on_control(); at
//            next_timeout() -> handle_timeout().
//   server:  admission -> online(); the session's end -> offline();
//            take_notices() -> close what they name.
//
// Nothing is sent per heartbeat: live entries are refreshed in batches (one
// FCALL per `batch` entries), spread so that each is refreshed once per ttl/3.
// While Redis is unreachable, offline events queue (at most `buffer_limit`;
// past that the oldest are dropped and counted); on reconnect the whole live
// set is re-asserted (fenced) and the queue drains in order.
//
// Time: `now` (monotonic) paces the work; `unix_ms` stamps the records.
// Threads: none; one thread at a time. Errors: none thrown; a Redis error reply
// becomes an `error` notice and is counted.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// A Redis reply as the driver decoded it (RESP2).
struct RedisValue {
    enum class Type : std::uint8_t { nil, integer, string, status, error, array };
    Type type = Type::nil;
    std::int64_t integer = 0;
    std::string text;  // string, status, error
    std::vector<RedisValue> elements;
};

struct RedisCommand {
    std::vector<std::string> argv;
    std::uint64_t tag = 0;    // Handed back with the reply.
    std::string route;        // A key on the node this goes to (empty: any node).
    bool every_node = false;  // To every master (one reply: the first error, or the last).
};

// Redis Cluster's slot of KEY: CRC16 (XMODEM) of its hash tag (the text
// between the first '{' and the next '}', when not empty) or of the whole key,
// modulo 16384 (Redis Cluster specification, "Key distribution model").
std::uint16_t redis_key_slot(std::string_view key);
constexpr std::size_t kRedisSlots = 16384;

// The prefix of the keys, on the stream's own slot, that hold the last event of
// each id the stream has; empty if the stream's name has a '{' that is not a
// hash tag (such a name is refused).
std::string presence_seen_prefix(std::string_view stream);

struct PresencePublisherConfig {
    std::string gateway;                   // This gateway's name (unique in the fleet).
    Duration ttl = Duration::seconds(30);  // Of each live entry and of the gateway's heartbeat key.
    Duration offline_retention = Duration::hours(24);
    std::string stream = "lifeline:offline";
    std::size_t stream_maxlen = 1'000'000;  // XADD MAXLEN ~
    std::size_t buffer_limit = 100'000;     // Offline events kept while Redis is away.
    std::size_t batch = 256;                // Entries per refresh FCALL.
    std::size_t reap_limit = 1000;          // Sessions of a dead gateway ended per FCALL.
    Duration tick = Duration::milliseconds(100);
};

struct PresenceNotice {
    enum class Kind : std::uint8_t {
        replaced,  // Another session of this id (on any gateway) took it: close `conn`, session_replaced.
        lost,      // Redis no longer gives this gateway the id (it was declared gone meanwhile): close `conn`.
        error,     // Redis said no, or an update was dropped: `message` says what.
    };
    Kind kind;
    std::string id;
    std::uint64_t conn = 0;
    std::string message;
};

struct PresencePublisherCounters {
    std::uint64_t commands = 0;    // Sent to Redis.
    std::uint64_t refreshed = 0;   // Entries refreshed.
    std::uint64_t onlines = 0;     // Online FCALLs acknowledged.
    std::uint64_t offlines = 0;    // Offline FCALLs acknowledged (applied or fenced out).
    std::uint64_t fenced_out = 0;  // Writes Redis refused because a newer epoch holds the id.
    std::uint64_t dropped = 0;     // Offline events dropped: the buffer was full.
    std::uint64_t errors = 0;      // Error replies.
    std::uint64_t reaped = 0;      // Sessions of dead gateways this one ended.
    std::uint64_t reconnects = 0;
};

class PresencePublisher {
public:
    explicit PresencePublisher(PresencePublisherConfig config);

    void online(std::string_view id, std::uint64_t conn, std::string_view peer, std::int64_t unix_ms);
    void offline(std::string_view id, std::uint64_t conn, DisconnectReason reason, std::int64_t detected_after_ms,
                 std::int64_t unix_ms);

    // A cluster's slot map: the node (any numbering) of each of kRedisSlots
    // slots. Never called, or empty: one node.
    void on_topology(std::vector<std::uint16_t> node_of_slot);
    void on_connected(Instant now, std::int64_t unix_ms);
    void on_disconnected();
    void on_reply(std::uint64_t tag, const RedisValue& reply);
    void on_control(std::string_view message);  // "ID EPOCH" on control_channel().
    void handle_timeout(Instant now, std::int64_t unix_ms);
    Instant next_timeout() const;

    std::vector<RedisCommand> take_commands();
    std::vector<PresenceNotice> take_notices();

    const std::string& control_channel() const { return control_channel_; }
    bool connected() const { return connected_; }
    std::size_t live() const { return live_.size(); }
    std::size_t queued() const { return queue_.size(); }
    // Commands sent whose replies have not come back.
    std::size_t in_flight() const { return in_flight_.size(); }
    const PresencePublisherCounters& counters() const { return counters_; }
    const PresencePublisherConfig& config() const { return config_; }

private:
    struct Live {
        std::uint64_t conn = 0;
        std::uint64_t epoch = 0;  // 0: Redis has not answered the online yet.
        std::string peer;
        std::int64_t since_ms = 0;
        std::size_t order = 0;  // Index in order_.
    };
    struct Offline {
        std::string id;
        std::uint64_t conn = 0;
        std::uint64_t epoch = 0;  // 0: waits for its online's reply.
        std::string reason;
        std::int64_t detected_after_ms = 0;
        std::string peer;
        std::int64_t since_ms = 0;  // When it went online (for an online sent late).
        std::int64_t unix_ms = 0;
    };
    enum class Op : std::uint8_t {
        load,
        last,
        index,
        online,
        offline,
        refresh,
        restore,
        heartbeat,
        gateways,
        reap_list,
        reap_ids,
        emit,
        ack,
        unindex,
        other
    };
    // A session in a gateway's list (lifeline:sessions:{G}): its id and "RUN CONN".
    struct Entry {
        std::string id;
        std::string token;
        std::uint64_t conn = 0;
    };
    struct Pending {
        Op op = Op::other;
        std::string id;
        std::uint64_t conn = 0;
        std::vector<std::string> batch;  // refresh, restore: the ids, in order.
        std::vector<std::uint64_t> batch_epochs;
        std::vector<Entry> entries;       // index, reap_ids, unindex
        std::string list;                 // reap_list, reap_ids, unindex: the sessions list they work on.
        std::vector<std::string> events;  // emit: what it carries.
        std::unordered_map<std::string, std::vector<Entry>> then_unindex;  // emit: per list, once carried.
        std::vector<Offline> offs;  // offline, emit, unindex: the offline events that end with it.
    };
    // One gateway's sessions being ended (a dead gateway's, or this one's previous run's).
    struct Reaping {
        std::string gateway;
        bool force = false;
        std::int64_t last_heartbeat_ms = 0;  // 0: not known.
        std::size_t outstanding = 0;         // Entries of this round not yet unindexed.
    };

    void send(std::vector<std::string> argv, Pending pending, std::string route = {});
    void flush_batches();
    void send_online(const std::string& id, const Live& live);
    void send_offline(const Offline& o);
    void admit(const std::string& id, std::uint64_t conn);
    void queue_offline(Offline o);
    void drain_queue();
    void refresh_some(std::size_t count);
    void restore(const std::vector<std::string>& ids, const std::vector<std::uint64_t>& epochs);
    void heartbeat(std::int64_t unix_ms);
    void reap(const std::string& gateway, bool force, bool rename, std::int64_t last_heartbeat_ms);
    void next_reap_round(const std::string& list);
    void carry(const RedisValue& events, const std::string& list, std::vector<Entry> entries,
               std::vector<Offline> offs);
    void unindex(const std::string& list, std::vector<Entry> entries, std::vector<Offline> offs);
    void forget(const std::string& id);
    void on_index_reply(const Pending& p);
    void on_online_reply(const Pending& p, const RedisValue& reply);
    void on_offline_reply(const Pending& p, const RedisValue& reply);
    void on_refresh_reply(const Pending& p, const RedisValue& reply);
    void on_gateways_reply(const RedisValue& reply);
    void on_reap_list_reply(const Pending& p, const RedisValue& reply);
    void on_reap_ids_reply(const Pending& p, const RedisValue& reply);
    void on_emit_reply(const Pending& p, const RedisValue& reply);
    void on_unindex_reply(const Pending& p);
    void on_failed(Pending& p);
    void keep_for_reconnect(Pending& p);
    void notice(PresenceNotice::Kind kind, std::string id, std::uint64_t conn, std::string message);
    std::string session_key() const;
    std::string token(std::uint64_t conn) const;
    std::uint16_t node_of(const std::string& id) const;
    std::vector<std::string> stream_args() const;

    PresencePublisherConfig config_;
    std::string control_channel_;
    bool connected_ = false;
    bool started_ = false;      // Connected at least once.
    bool self_reaped_ = false;  // The previous run's sessions are all ended.
    bool renamed_ = false;      // ... and were moved aside (Redis said so).
    // An error reply (not a lost connection): everything is sent again, as
    // after a reconnect, at this time; the wait doubles while errors go on
    // (from 1 s at each real reconnect, up to 30 s).
    Instant resync_at_ = Instant::never();
    Duration resync_backoff_ = Duration::seconds(1);
    std::string run_;  // This run's token in Redis (its first connection's time, ms).
    std::string seen_prefix_;
    std::vector<std::uint16_t> node_of_slot_;  // Empty: one node.
    std::int64_t previous_heartbeat_ms_ = 0;   // This gateway's last before this run (for its self-reap).
    // Control messages that came before their session's online reply.
    std::unordered_map<std::string, std::uint64_t> early_controls_;
    std::unordered_map<std::string, Live> live_;
    std::vector<std::string> order_;  // Live ids, for the refresh round-robin.
    std::size_t cursor_ = 0;
    double refresh_credit_ = 0;                           // Entries owed to the round-robin (fractions carry over).
    std::deque<Offline> queue_;                           // Not sent yet (Redis away, or its online unanswered).
    std::unordered_map<std::uint64_t, Offline> waiting_;  // conn -> offline awaiting its epoch.
    std::unordered_map<std::uint64_t, Pending> in_flight_;
    std::unordered_map<std::string, Reaping> reaping_;  // By the list being ended.
    // Built up between take_commands() calls, sent as one command each.
    std::vector<Entry> index_batch_;
    Pending emit_batch_;
    std::unordered_map<std::string, Pending> unindex_batch_;    // By list.
    std::vector<std::string> carry_later_;                      // Events whose carrying was cut by a lost connection.
    std::vector<std::pair<std::string, Entry>> unindex_later_;  // Likewise, entries to leave their lists.
    std::uint64_t next_tag_ = 1;
    std::vector<RedisCommand> commands_;
    std::vector<PresenceNotice> notices_;
    Instant next_tick_ = Instant::never();
    Instant next_heartbeat_ = Instant::never();
    Instant reap_from_ = Instant::never();  // One TTL after each (re)connect.
    std::int64_t last_unix_ms_ = 0;
    Instant last_now_;
    PresencePublisherCounters counters_;
};

}  // namespace lifeline
