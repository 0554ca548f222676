// PresenceReader: hiredis' synchronous API over the keys and the stream of
// core/presence_redis_library.cpp.
#include "lifeline/presence_reader.hpp"

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <charconv>
#include <map>

#include "lifeline/engine/presence_publisher.hpp"
#include "runtime/redis_link.hpp"

namespace lifeline {

namespace {

struct ReplyDeleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string_view text(const redisReply* r) {
    return r != nullptr && r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view();
}

template <class T>
T number(std::string_view s) {
    T v{};
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

// A flat [field, value, ...] array into a record.
FleetPresence record_of(std::string_view id, const redisReply* fields) {
    FleetPresence p;
    p.id = id;
    for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
        const std::string_view k = text(fields->element[i]);
        const std::string_view v = text(fields->element[i + 1]);
        if (k == "online")
            p.online = v == "1";
        else if (k == "epoch")
            p.epoch = number<std::uint64_t>(v);
        else if (k == "gateway")
            p.gateway = v;
        else if (k == "conn")
            p.conn = number<std::uint64_t>(v);
        else if (k == "peer")
            p.peer = v;
        else if (k == "since")
            p.since_ms = number<std::int64_t>(v);
        else if (k == "reason")
            p.last_reason = v;
        else if (k == "detected_after_ms")
            p.detected_after_ms = number<std::int64_t>(v);
    }
    if (p.online) {
        p.last_reason.clear();  // A reason is the last offline's: not this session's.
        p.detected_after_ms = 0;
    }
    return p;
}

PresenceEvent event_of(const redisReply* entry) {
    PresenceEvent e;
    e.stream_id = text(entry->element[0]);
    const redisReply* fields = entry->element[1];
    for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
        const std::string_view k = text(fields->element[i]);
        const std::string_view v = text(fields->element[i + 1]);
        if (k == "event")
            e.event = v;
        else if (k == "id")
            e.id = v;
        else if (k == "epoch")
            e.epoch = number<std::uint64_t>(v);
        else if (k == "reason")
            e.reason = v;
        else if (k == "detected_after_ms")
            e.detected_after_ms = number<std::int64_t>(v);
        else if (k == "gateway")
            e.gateway = v;
        else if (k == "peer")
            e.peer = v;
        else if (k == "time")
            e.time_ms = number<std::int64_t>(v);
    }
    return e;
}

}  // namespace

// One connection per Redis node it was sent to. With a Redis Cluster, a
// command goes first where its key's slot was last seen and follows MOVED
// (remembered) and ASK (this once) redirections.
struct PresenceReader::Impl {
    struct Context {
        void operator()(redisContext* c) const { redisFree(c); }
    };
    std::string where;  // The seed, for messages.
    std::string seed;   // "host:port"
    timeval timeout{};
    std::map<std::string, std::unique_ptr<redisContext, Context>> nodes;  // "host:port" -> connection.
    std::map<std::uint16_t, std::string> slot_node;                       // Learnt from MOVED.

    Result<redisContext*> node(const std::string& address) {
        auto it = nodes.find(address);
        if (it != nodes.end()) return it->second.get();
        const std::size_t colon = address.rfind(':');
        const std::string host = address.substr(0, colon);
        const int port = number<int>(std::string_view(address).substr(colon + 1));
        redisContext* c = redisConnectWithTimeout(host.c_str(), port, timeout);
        if (c == nullptr) return make_error(Errc::system, "Redis " + address + ": out of memory");
        std::unique_ptr<redisContext, Context> owned(c);
        if (c->err != 0) return make_error(Errc::system, "Redis redis://" + address + ": " + c->errstr);
        redisSetTimeout(c, timeout);
        return nodes.emplace(address, std::move(owned)).first->second.get();
    }

    void set_timeout(timeval tv) {
        timeout = tv;
        for (auto& [address, c] : nodes) redisSetTimeout(c.get(), tv);
    }

    static Reply send(redisContext* c, const std::vector<std::string>& argv) {
        std::vector<const char*> args;
        std::vector<std::size_t> lengths;
        for (const std::string& a : argv) {
            args.push_back(a.data());
            lengths.push_back(a.size());
        }
        return Reply(
            static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lengths.data())));
    }

    // ROUTE: the command's key (empty: the seed).
    Result<Reply> command(const std::vector<std::string>& argv, const std::string& route = {}) {
        std::string address = seed;
        if (!route.empty()) {
            if (auto known = slot_node.find(redis_key_slot(route)); known != slot_node.end()) address = known->second;
        }
        bool asking = false;
        for (int hop = 0; hop < 5; ++hop) {
            Result<redisContext*> c = node(address);
            if (!c) return c.error();
            if (asking) Reply ignored = send(*c, {"ASKING"});
            Reply reply = send(*c, argv);
            if (!reply) {
                const std::string why = (*c)->errstr;
                nodes.erase(address);  // Broken: a later command reconnects.
                return make_error(Errc::system, "Redis redis://" + address + ": " + why);
            }
            const std::string_view error = reply->type == REDIS_REPLY_ERROR ? text(reply.get()) : std::string_view();
            const bool moved = error.rfind("MOVED ", 0) == 0;
            if (moved || error.rfind("ASK ", 0) == 0) {
                // "MOVED 3999 127.0.0.1:6381"
                const std::size_t space = error.rfind(' ');
                address = std::string(error.substr(space + 1));
                if (moved) slot_node[number<std::uint16_t>(error.substr(error.find(' ') + 1))] = address;
                asking = !moved;
                continue;
            }
            if (reply->type == REDIS_REPLY_ERROR)
                return make_error(Errc::invalid_argument,
                                  "Redis " + where + ": " + argv[0] + ": " + std::string(error));
            return reply;
        }
        return make_error(Errc::system, "Redis " + where + ": " + argv[0] + ": too many cluster redirections");
    }
};

PresenceReader::PresenceReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PresenceReader::PresenceReader(PresenceReader&&) noexcept = default;
PresenceReader& PresenceReader::operator=(PresenceReader&&) noexcept = default;
PresenceReader::~PresenceReader() = default;

Result<PresenceReader> PresenceReader::connect(std::string_view redis_url, Duration timeout) {
    Result<runtime::RedisAddress> address = runtime::parse_redis_url(redis_url);
    if (!address) return address.error();
    auto impl = std::make_unique<Impl>();
    impl->where = address->to_string();
    impl->seed = address->host + ":" + std::to_string(address->port);
    impl->timeout = {static_cast<time_t>(timeout.ms() / 1000), static_cast<suseconds_t>(timeout.ms() % 1000 * 1000)};
    if (Result<redisContext*> c = impl->node(impl->seed); !c) return c.error();
    if (address->db != 0) {
        if (auto r = impl->command({"SELECT", std::to_string(address->db)}); !r) return r.error();
    }
    return PresenceReader(std::move(impl));
}

Result<std::optional<FleetPresence>> PresenceReader::get(std::string_view id) {
    const std::string key = "lifeline:{" + std::string(id) + "}";
    Result<Reply> r = impl_->command({"HGETALL", key}, key);
    if (!r) return r.error();
    if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements == 0) return std::optional<FleetPresence>();
    return std::optional<FleetPresence>(record_of(id, r->get()));
}

Result<std::vector<FleetPresence>> PresenceReader::list(std::string_view gateway) {
    std::vector<std::string> gateways;
    if (!gateway.empty()) {
        gateways.emplace_back(gateway);
    } else {
        Result<Reply> all = impl_->command({"HKEYS", "lifeline:gateways"}, "lifeline:gateways");
        if (!all) return all.error();
        for (std::size_t i = 0; i < (*all)->elements; ++i) gateways.emplace_back(text((*all)->element[i]));
    }
    std::vector<FleetPresence> out;
    for (const std::string& g : gateways) {
        const std::string sessions = "lifeline:sessions:{" + g + "}";
        Result<Reply> ids = impl_->command({"HKEYS", sessions}, sessions);
        if (!ids) return ids.error();
        for (std::size_t i = 0; i < (*ids)->elements; ++i) {
            Result<std::optional<FleetPresence>> p = get(text((*ids)->element[i]));
            if (!p) return p.error();
            if (*p && (*p)->online && (*p)->gateway == g) out.push_back(std::move(**p));
        }
    }
    return out;
}

Result<void> PresenceReader::watch(const PresenceWatch& o, const std::function<bool(const PresenceEvent&)>& on_event,
                                   const std::function<bool()>& stop) {
    const std::string block = std::to_string(std::max<std::int64_t>(1, o.poll.ms()));
    std::string last = o.from_start ? "0-0" : "$";
    bool pending = true;              // With a group: first what this consumer was given and never acked,
    std::string pending_after = "0";  // from after the last of those seen.
    // Each blocking read must end before the socket's own timeout does.
    const std::int64_t socket_ms = std::max<std::int64_t>(5000, o.poll.ms() + 5000);
    const timeval tv{static_cast<time_t>(socket_ms / 1000), static_cast<suseconds_t>(socket_ms % 1000 * 1000)};
    impl_->set_timeout(tv);
    if (!o.group.empty()) {
        Result<Reply> made =
            impl_->command({"XGROUP", "CREATE", o.stream, o.group, o.from_start ? "0" : "$", "MKSTREAM"}, o.stream);
        if (!made && made.error().message.find("BUSYGROUP") == std::string::npos) return made.error();
    }
    if (o.group.empty() && !o.after.empty()) {
        last = o.after;
    } else if (o.group.empty() && !o.from_start) {
        // Where the stream ends now: "$" on every read would skip what arrives between two reads.
        Result<Reply> tail = impl_->command({"XREVRANGE", o.stream, "+", "-", "COUNT", "1"}, o.stream);
        if (!tail) return tail.error();
        last = (*tail)->elements > 0 ? std::string(text((*tail)->element[0]->element[0])) : "0-0";
    }
    std::uint64_t seen = 0;
    while (!(stop && stop())) {
        std::vector<std::string> argv;
        if (o.group.empty()) {
            argv = {"XREAD", "COUNT", "100", "BLOCK", block, "STREAMS", o.stream, last};
        } else {
            argv = {"XREADGROUP", "GROUP",   o.group,  o.consumer,         "COUNT", "100", "BLOCK",
                    block,        "STREAMS", o.stream, pending ? "0" : ">"};
        }
        Result<Reply> r = impl_->command(argv, o.stream);
        if (!r) return r.error();
        const redisReply* streams = r->get();
        if (streams->type != REDIS_REPLY_ARRAY || streams->elements == 0) continue;  // The block ran out.
        const redisReply* entries = streams->element[0]->element[1];
        if (pending && entries->elements == 0) pending = false;
        for (std::size_t i = 0; i < entries->elements; ++i) {
            const redisReply* entry = entries->element[i];
            if (entry->elements < 2 || entry->element[1]->type != REDIS_REPLY_ARRAY) {
                // Trimmed away (MAXLEN) while pending: nothing to deliver; acked so it stops coming back.
                const std::string gone(text(entry->element[0]));
                if (pending) pending_after = gone;
                if (!o.group.empty()) {
                    if (auto ack = impl_->command({"XACK", o.stream, o.group, gone}, o.stream); !ack)
                        return ack.error();
                }
                continue;
            }
            const PresenceEvent e = event_of(entry);
            last = e.stream_id;
            if (pending) pending_after = e.stream_id;
            const bool more = on_event(e);
            if (!o.group.empty()) {
                if (auto ack = impl_->command({"XACK", o.stream, o.group, e.stream_id}, o.stream); !ack)
                    return ack.error();
            }
            if (!more || (o.count != 0 && ++seen >= o.count)) return {};
        }
    }
    return {};
}

}  // namespace lifeline
