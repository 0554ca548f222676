// PresenceReader: hiredis' synchronous API over the keys and the stream of
// core/presence_redis_library.cpp.
#include "lifeline/presence_reader.hpp"

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <charconv>

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

struct PresenceReader::Impl {
    redisContext* context = nullptr;
    std::string where;
    ~Impl() {
        if (context != nullptr) redisFree(context);
    }

    Result<Reply> command(const std::vector<std::string>& argv) {
        std::vector<const char*> args;
        std::vector<std::size_t> lengths;
        for (const std::string& a : argv) {
            args.push_back(a.data());
            lengths.push_back(a.size());
        }
        auto* r = static_cast<redisReply*>(
            redisCommandArgv(context, static_cast<int>(args.size()), args.data(), lengths.data()));
        if (r == nullptr) return make_error(Errc::system, "Redis " + where + ": " + context->errstr);
        Reply reply(r);
        if (r->type == REDIS_REPLY_ERROR)
            return make_error(Errc::invalid_argument, "Redis " + where + ": " + argv[0] + ": " + std::string(text(r)));
        return reply;
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
    const timeval tv{static_cast<time_t>(timeout.ms() / 1000), static_cast<suseconds_t>(timeout.ms() % 1000 * 1000)};
    impl->context = redisConnectWithTimeout(address->host.c_str(), address->port, tv);
    if (impl->context == nullptr) return make_error(Errc::system, "Redis " + impl->where + ": out of memory");
    if (impl->context->err != 0) return make_error(Errc::system, "Redis " + impl->where + ": " + impl->context->errstr);
    redisSetTimeout(impl->context, tv);
    if (address->db != 0) {
        if (auto r = impl->command({"SELECT", std::to_string(address->db)}); !r) return r.error();
    }
    return PresenceReader(std::move(impl));
}

Result<std::optional<FleetPresence>> PresenceReader::get(std::string_view id) {
    Result<Reply> r = impl_->command({"HGETALL", "lifeline:{" + std::string(id) + "}"});
    if (!r) return r.error();
    if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements == 0) return std::optional<FleetPresence>();
    return std::optional<FleetPresence>(record_of(id, r->get()));
}

Result<std::vector<FleetPresence>> PresenceReader::list(std::string_view gateway) {
    std::vector<std::string> gateways;
    if (!gateway.empty()) {
        gateways.emplace_back(gateway);
    } else {
        Result<Reply> all = impl_->command({"HKEYS", "lifeline:gateways"});
        if (!all) return all.error();
        for (std::size_t i = 0; i < (*all)->elements; ++i) gateways.emplace_back(text((*all)->element[i]));
    }
    std::vector<FleetPresence> out;
    for (const std::string& g : gateways) {
        Result<Reply> ids = impl_->command({"HKEYS", "lifeline:sessions:{" + g + "}"});
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
    redisSetTimeout(impl_->context, tv);
    if (!o.group.empty()) {
        Result<Reply> made =
            impl_->command({"XGROUP", "CREATE", o.stream, o.group, o.from_start ? "0" : "$", "MKSTREAM"});
        if (!made && made.error().message.find("BUSYGROUP") == std::string::npos) return made.error();
    }
    if (o.group.empty() && !o.after.empty()) {
        last = o.after;
    } else if (o.group.empty() && !o.from_start) {
        // Where the stream ends now: "$" on every read would skip what arrives between two reads.
        Result<Reply> tail = impl_->command({"XREVRANGE", o.stream, "+", "-", "COUNT", "1"});
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
        Result<Reply> r = impl_->command(argv);
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
                    if (auto ack = impl_->command({"XACK", o.stream, o.group, gone}); !ack) return ack.error();
                }
                continue;
            }
            const PresenceEvent e = event_of(entry);
            last = e.stream_id;
            if (pending) pending_after = e.stream_id;
            const bool more = on_event(e);
            if (!o.group.empty()) {
                if (auto ack = impl_->command({"XACK", o.stream, o.group, e.stream_id}); !ack) return ack.error();
            }
            if (!more || (o.count != 0 && ++seen >= o.count)) return {};
        }
    }
    return {};
}

}  // namespace lifeline
