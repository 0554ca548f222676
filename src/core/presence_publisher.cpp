// One gateway's side of fleet presence on Redis (see the header). The rules
// that must hold across gateways (fencing by epoch, exactly one offline per
// epoch) run inside Redis, in core/presence_redis_library.cpp; this side only
// decides what to send when, and what the replies mean for local sessions.
#include "lifeline/engine/presence_publisher.hpp"

#include <algorithm>
#include <charconv>

#include "core/presence_redis_library.hpp"

namespace lifeline {

namespace {

std::string num(std::int64_t v) { return std::to_string(v); }

std::optional<std::uint64_t> parse_u64(std::string_view text) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return v;
}

std::int64_t integer_at(const RedisValue& v, std::size_t i) {
    if (v.type != RedisValue::Type::array || i >= v.elements.size()) return 0;
    const RedisValue& e = v.elements[i];
    if (e.type == RedisValue::Type::integer) return e.integer;
    return static_cast<std::int64_t>(parse_u64(e.text).value_or(0));
}

std::string text_at(const RedisValue& v, std::size_t i) {
    if (v.type != RedisValue::Type::array || i >= v.elements.size()) return {};
    return v.elements[i].text;
}

}  // namespace

PresencePublisher::PresencePublisher(PresencePublisherConfig config)
    : config_(std::move(config)), control_channel_("lifeline:control:" + config_.gateway) {
    config_.batch = std::max<std::size_t>(1, config_.batch);
    config_.reap_limit = std::max<std::size_t>(1, config_.reap_limit);
}

std::string PresencePublisher::session_key() const { return "lifeline:sessions:{" + config_.gateway + "}"; }

// ---- Session events -----------------------------------------------------------

void PresencePublisher::online(std::string_view id, std::uint64_t conn, std::string_view peer, std::int64_t unix_ms) {
    const std::string key(id);
    if (live_.contains(key)) forget(key);  // Replaced here: Redis records the older one's end.
    Live& live = live_[key];
    live.conn = conn;
    live.peer = peer;
    live.since_ms = unix_ms;
    live.order = order_.size();
    order_.push_back(key);
    if (connected_) send_online(key, live);
}

void PresencePublisher::offline(std::string_view id, std::uint64_t conn, DisconnectReason reason,
                                std::int64_t detected_after_ms, std::int64_t unix_ms) {
    const std::string key(id);
    auto it = live_.find(key);
    if (it == live_.end() || it->second.conn != conn) return;  // Replaced or declared gone: Redis has its end.
    Offline o{key,
              conn,
              it->second.epoch,
              std::string(to_string(reason)),
              detected_after_ms,
              it->second.peer,
              it->second.since_ms,
              unix_ms};
    forget(key);
    if (!connected_) {
        queue_offline(std::move(o));
    } else if (o.epoch == 0) {
        waiting_.emplace(conn, std::move(o));  // Its online is in flight: the reply brings the epoch.
    } else {
        send_offline(o);
    }
}

void PresencePublisher::forget(const std::string& id) {
    auto it = live_.find(id);
    if (it == live_.end()) return;
    const std::size_t at = it->second.order;
    if (at + 1 != order_.size()) {
        order_[at] = std::move(order_.back());
        live_[order_[at]].order = at;
    }
    order_.pop_back();
    if (cursor_ > order_.size()) cursor_ = 0;
    live_.erase(it);
}

void PresencePublisher::queue_offline(Offline o) {
    if (queue_.size() >= config_.buffer_limit) {
        ++counters_.dropped;
        notice(PresenceNotice::Kind::error, queue_.front().id, queue_.front().conn,
               "presence buffer full (" + std::to_string(config_.buffer_limit) +
                   " offline events while Redis is away): the oldest was dropped");
        queue_.pop_front();
    }
    queue_.push_back(std::move(o));
}

void PresencePublisher::on_control(std::string_view message) {
    const std::size_t space = message.rfind(' ');
    if (space == std::string_view::npos) return;
    const std::string id(message.substr(0, space));
    const std::optional<std::uint64_t> epoch = parse_u64(message.substr(space + 1));
    auto it = live_.find(id);
    if (epoch && it != live_.end() && it->second.epoch == 0) {
        early_controls_[id] = *epoch;  // Came before our online's reply (another connection): applied with it.
        return;
    }
    if (!epoch || it == live_.end() || it->second.epoch != *epoch) return;  // Not (or no longer) ours.
    const std::uint64_t conn = it->second.conn;
    forget(id);
    notice(PresenceNotice::Kind::replaced, id, conn, "another gateway admitted the same client id");
}

// ---- Connection ----------------------------------------------------------------

void PresencePublisher::on_connected(Instant now, std::int64_t unix_ms) {
    if (started_) ++counters_.reconnects;
    connected_ = true;
    last_unix_ms_ = unix_ms;
    send({"FUNCTION", "LOAD", "REPLACE", std::string(presence_redis::library_source())}, {Op::load});
    if (!started_) run_ = num(unix_ms);  // Tells this run's admissions from a previous run's.
    // A previous run's sessions are gone: moved aside at the first call, then ended in batches.
    if (!self_reaped_) reap(config_.gateway, unix_ms, true, !started_);
    started_ = true;
    heartbeat(unix_ms);
    // What ended while Redis was away goes first (older epochs), then the live
    // set, written whole (fenced) since Redis may have come back empty, then
    // the admissions Redis never heard of.
    drain_queue();
    std::vector<std::string> ids;
    std::vector<std::uint64_t> epochs;
    for (const std::string& id : order_) {
        const Live& live = live_[id];
        if (live.epoch == 0) continue;
        ids.push_back(id);
        epochs.push_back(live.epoch);
        if (ids.size() >= config_.batch) {
            restore(ids, epochs);
            ids.clear();
            epochs.clear();
        }
    }
    restore(ids, epochs);
    for (const std::string& id : order_) {
        if (const Live& live = live_[id]; live.epoch == 0) send_online(id, live);
    }
    cursor_ = 0;
    next_tick_ = now + config_.tick;
    next_heartbeat_ = now + config_.ttl / 3;
    reap_from_ = now + config_.ttl;
}

void PresencePublisher::on_disconnected() {
    if (!connected_) return;
    connected_ = false;
    // What was in flight may or may not have run: every write is idempotent, so send it again.
    std::vector<std::pair<std::uint64_t, Offline>> unsent;
    for (auto& [tag, p] : in_flight_) {
        if (p.op == Op::offline) unsent.emplace_back(tag, std::move(p.off));
    }
    std::sort(unsent.begin(), unsent.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (auto& [tag, o] : unsent) queue_.push_front(std::move(o));
    for (auto& [conn, o] : waiting_) queue_.push_back(std::move(o));
    waiting_.clear();
    while (queue_.size() > config_.buffer_limit) {
        ++counters_.dropped;
        notice(PresenceNotice::Kind::error, queue_.front().id, queue_.front().conn,
               "presence buffer full: the oldest offline event was dropped");
        queue_.pop_front();
    }
    in_flight_.clear();
    commands_.clear();
    next_tick_ = Instant::never();
    next_heartbeat_ = Instant::never();
}

void PresencePublisher::drain_queue() {
    while (!queue_.empty()) {
        Offline o = std::move(queue_.front());
        queue_.pop_front();
        if (o.epoch != 0) {
            send_offline(o);
            continue;
        }
        // Admitted and gone while Redis was away: online first, then the offline with its epoch.
        const Live live{o.conn, 0, o.peer, o.since_ms, 0};
        send_online(o.id, live);
        waiting_.emplace(o.conn, std::move(o));
    }
}

// ---- Timers -------------------------------------------------------------------

Instant PresencePublisher::next_timeout() const { return std::min(next_tick_, next_heartbeat_); }

void PresencePublisher::handle_timeout(Instant now, std::int64_t unix_ms) {
    last_unix_ms_ = unix_ms;
    if (!connected_) return;
    if (now >= next_tick_) {
        // Each entry once per ttl/3: a third of the TTL is left when a refresh is late by a whole interval.
        const double per_tick = static_cast<double>(order_.size()) * static_cast<double>(config_.tick.ns()) /
                                static_cast<double>(std::max<std::int64_t>(1, (config_.ttl / 3).ns()));
        refresh_credit_ += per_tick;
        const auto count = static_cast<std::size_t>(refresh_credit_);
        refresh_credit_ -= static_cast<double>(count);
        refresh_some(count);
        next_tick_ = std::max(next_tick_ + config_.tick, now);
    }
    if (now >= next_heartbeat_) {
        heartbeat(unix_ms);
        // Look for dead gateways only once the others had a TTL to come back
        // after whatever kept us from Redis (it may have kept them too).
        if (now >= reap_from_) send({"HGETALL", "lifeline:gateways"}, {Op::gateways});
        next_heartbeat_ = now + config_.ttl / 3;
    }
}

void PresencePublisher::heartbeat(std::int64_t unix_ms) {
    send({"SET", "lifeline:gateway:{" + config_.gateway + "}", num(unix_ms), "PX", num(config_.ttl.ms())},
         {Op::heartbeat});
    send({"HSET", "lifeline:gateways", config_.gateway, num(unix_ms)}, {Op::heartbeat});
}

// ---- Commands -----------------------------------------------------------------

void PresencePublisher::send(std::vector<std::string> argv, Pending pending) {
    const std::uint64_t tag = next_tag_++;
    in_flight_.emplace(tag, std::move(pending));
    commands_.push_back({std::move(argv), tag});
    ++counters_.commands;
}

void PresencePublisher::send_online(const std::string& id, const Live& live) {
    Pending p{Op::online, id, live.conn};
    const std::string tag = "lifeline:{" + id + "}";
    send({"FCALL", "lifeline_online", "5", tag, tag + ":epoch", config_.stream, session_key(), tag + ":admissions", id,
          config_.gateway, num(static_cast<std::int64_t>(live.conn)), live.peer, num(live.since_ms),
          num(config_.ttl.ms()), num(static_cast<std::int64_t>(config_.stream_maxlen)), run_},
         std::move(p));
}

void PresencePublisher::send_offline(const Offline& o) {
    Pending p{Op::offline, o.id, o.conn};
    p.off = o;
    send({"FCALL", "lifeline_offline", "2", session_key(), config_.stream, o.id,
          num(static_cast<std::int64_t>(o.epoch)), o.reason, num(o.detected_after_ms), config_.gateway, o.peer,
          num(o.unix_ms), num(config_.offline_retention.ms()), num(static_cast<std::int64_t>(config_.stream_maxlen))},
         std::move(p));
}

void PresencePublisher::refresh_some(std::size_t count) {
    count = std::min(count, order_.size());
    std::vector<std::string> argv;
    Pending p{Op::refresh};
    auto flush = [&] {
        if (p.batch.empty()) return;
        send(std::move(argv), std::move(p));
        argv.clear();
        p = Pending{Op::refresh};
    };
    for (std::size_t i = 0; i < count; ++i) {
        if (cursor_ >= order_.size()) cursor_ = 0;
        const std::string& id = order_[cursor_++];
        const Live& live = live_[id];
        if (live.epoch == 0) continue;  // Its online is in flight.
        if (argv.empty())
            argv = {"FCALL", "lifeline_refresh", "1", session_key(), config_.gateway, num(config_.ttl.ms())};
        argv.insert(argv.end(), {id, num(static_cast<std::int64_t>(live.epoch))});
        p.batch.push_back(id);
        p.batch_epochs.push_back(live.epoch);
        if (p.batch.size() >= config_.batch) flush();
    }
    flush();
}

// The entries whose records are gone, sent whole (still live here at the same epoch).
void PresencePublisher::restore(const std::vector<std::string>& ids, const std::vector<std::uint64_t>& epochs) {
    std::vector<std::string> argv = {"FCALL",       "lifeline_restore", "1",
                                     session_key(), config_.gateway,    num(config_.ttl.ms())};
    Pending p{Op::restore};
    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto it = live_.find(ids[i]);
        if (it == live_.end() || it->second.epoch != epochs[i]) continue;
        const Live& live = it->second;
        argv.insert(argv.end(), {ids[i], num(static_cast<std::int64_t>(live.epoch)),
                                 num(static_cast<std::int64_t>(live.conn)), live.peer, num(live.since_ms)});
        p.batch.push_back(ids[i]);
        p.batch_epochs.push_back(epochs[i]);
    }
    if (!p.batch.empty()) send(std::move(argv), std::move(p));
}

void PresencePublisher::reap(const std::string& gateway, std::int64_t unix_ms, bool force, bool rename) {
    Pending p{Op::reap};
    p.gateway = gateway;
    p.force = force;
    const std::string live = "lifeline:sessions:{" + gateway + "}";
    send({"FCALL", "lifeline_reap", "5", "lifeline:gateway:{" + gateway + "}", force ? live + ":prev" : live,
          "lifeline:gateways", config_.stream, live, gateway, num(unix_ms), num(config_.offline_retention.ms()),
          num(static_cast<std::int64_t>(config_.stream_maxlen)), num(static_cast<std::int64_t>(config_.reap_limit)),
          force ? "1" : "0", num((config_.ttl / 3).ms()), rename ? "1" : "0"},
         std::move(p));
}

// ---- Replies ------------------------------------------------------------------

void PresencePublisher::on_reply(std::uint64_t tag, const RedisValue& reply) {
    auto it = in_flight_.find(tag);
    if (it == in_flight_.end()) return;  // Sent before a reconnect: already resent.
    const Pending p = std::move(it->second);
    in_flight_.erase(it);
    if (reply.type == RedisValue::Type::error) {
        ++counters_.errors;
        notice(PresenceNotice::Kind::error, p.id, p.conn, "Redis: " + reply.text);
        if (p.op == Op::offline) queue_offline(p.off);  // Kept: sent again at the next reconnect.
        return;
    }
    switch (p.op) {
        case Op::online:
            return on_online_reply(p, reply);
        case Op::offline:
            ++counters_.offlines;
            if (reply.integer == 0) ++counters_.fenced_out;
            return;
        case Op::refresh:
        case Op::restore:
            return on_refresh_reply(p, reply);
        case Op::gateways:
            return on_gateways_reply(reply);
        case Op::reap:
            return on_reap_reply(p, reply);
        default:
            return;
    }
}

void PresencePublisher::on_online_reply(const Pending& p, const RedisValue& reply) {
    ++counters_.onlines;
    const auto epoch = static_cast<std::uint64_t>(integer_at(reply, 0));
    const bool superseded = integer_at(reply, 3) == 1;  // A resent online: another session took the id since.
    if (auto w = waiting_.find(p.conn); w != waiting_.end()) {
        Offline o = std::move(w->second);
        waiting_.erase(w);
        o.epoch = epoch;
        if (!superseded) send_offline(o);  // Superseded: Redis recorded its end when the id was taken.
        return;
    }
    auto it = live_.find(p.id);
    if (it == live_.end() || it->second.conn != p.conn) return;
    it->second.epoch = epoch;
    const auto control = early_controls_.find(p.id);
    const bool replaced = control != early_controls_.end() && control->second == epoch;
    if (control != early_controls_.end()) early_controls_.erase(control);
    if (superseded || replaced) {
        const std::uint64_t conn = it->second.conn;
        forget(p.id);
        notice(PresenceNotice::Kind::replaced, p.id, conn,
               "another session took this id while its online was in flight");
    }
}

void PresencePublisher::on_refresh_reply(const Pending& p, const RedisValue& reply) {
    // refresh: {lost, missing}; restore: lost.
    const bool nested = p.op == Op::refresh;
    static const RedisValue kNone;
    const RedisValue& lost = nested ? (reply.elements.empty() ? kNone : reply.elements[0]) : reply;
    if (nested) counters_.refreshed += p.batch.size();
    for (const RedisValue& index : lost.elements) {
        const auto at = static_cast<std::size_t>(index.integer);
        if (at == 0 || at > p.batch.size()) continue;
        const std::string& id = p.batch[at - 1];
        auto it = live_.find(id);
        if (it == live_.end() || it->second.epoch != p.batch_epochs[at - 1]) continue;
        ++counters_.fenced_out;
        const std::uint64_t conn = it->second.conn;
        forget(id);
        notice(PresenceNotice::Kind::lost, id, conn, "Redis no longer holds this session (declared gone meanwhile)");
    }
    if (!nested || reply.elements.size() < 2) return;
    std::vector<std::string> ids;
    std::vector<std::uint64_t> epochs;
    for (const RedisValue& index : reply.elements[1].elements) {
        const auto at = static_cast<std::size_t>(index.integer);
        if (at == 0 || at > p.batch.size()) continue;
        ids.push_back(p.batch[at - 1]);
        epochs.push_back(p.batch_epochs[at - 1]);
    }
    if (!ids.empty()) restore(ids, epochs);
}

void PresencePublisher::on_gateways_reply(const RedisValue& reply) {
    for (std::size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
        const std::string gateway = text_at(reply, i);
        if (gateway != config_.gateway) reap(gateway, last_unix_ms_, false, false);
    }
}

void PresencePublisher::on_reap_reply(const Pending& p, const RedisValue& reply) {
    const std::int64_t left = integer_at(reply, 0);
    counters_.reaped += static_cast<std::uint64_t>(std::max<std::int64_t>(0, integer_at(reply, 1)));
    if (left > 0) reap(p.gateway, last_unix_ms_, p.force, false);  // -1 alive, -2 stale: nothing to do.
    if (p.force && left == 0) self_reaped_ = true;
}

void PresencePublisher::notice(PresenceNotice::Kind kind, std::string id, std::uint64_t conn, std::string message) {
    notices_.push_back({kind, std::move(id), conn, std::move(message)});
}

std::vector<RedisCommand> PresencePublisher::take_commands() { return std::exchange(commands_, {}); }
std::vector<PresenceNotice> PresencePublisher::take_notices() { return std::exchange(notices_, {}); }

}  // namespace lifeline
