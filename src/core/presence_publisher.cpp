// One gateway's side of fleet presence on Redis (see the header). The rules
// that must hold across gateways (fencing by epoch, exactly one offline per
// epoch) run inside Redis, in core/presence_redis_library.cpp; this side only
// decides what to send when, and what the replies mean for local sessions.
#include "lifeline/engine/presence_publisher.hpp"

#include <algorithm>
#include <charconv>

#include "core/presence_redis_library.hpp"
#include "core/presence_wire.hpp"

namespace lifeline {

namespace {

using presence_wire::NodeBatches;
using presence_wire::num;
using presence_wire::rec_key;

// CRC16/XMODEM: polynomial 0x1021, initial value 0, no reflection.
std::uint16_t crc16(std::string_view bytes) {
    std::uint16_t crc = 0;
    for (const char c : bytes) {
        crc ^= static_cast<std::uint16_t>(static_cast<unsigned char>(c) << 8);
        for (int bit = 0; bit < 8; ++bit)
            crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

// The hash tag of KEY, if it has one (the text between the first '{' and the next '}', not empty).
std::optional<std::string_view> hash_tag(std::string_view key) {
    const std::size_t open = key.find('{');
    if (open == std::string_view::npos) return std::nullopt;
    const std::size_t close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return std::nullopt;
    return key.substr(open + 1, close - open - 1);
}

}  // namespace

std::uint16_t redis_key_slot(std::string_view key) {
    return static_cast<std::uint16_t>(crc16(hash_tag(key).value_or(key)) % kRedisSlots);
}

std::string presence_seen_prefix(std::string_view stream) {
    if (hash_tag(stream)) return std::string(stream) + ":seen:";
    if (stream.find('{') != std::string_view::npos || stream.find('}') != std::string_view::npos) return {};
    return "{" + std::string(stream) + "}:seen:";
}

PresencePublisher::PresencePublisher(PresencePublisherConfig config)
    : config_(std::move(config)),
      control_channel_("lifeline:control:" + config_.gateway),
      seen_prefix_(presence_seen_prefix(config_.stream)) {
    config_.batch = std::max<std::size_t>(1, config_.batch);
    config_.reap_limit = std::max<std::size_t>(1, config_.reap_limit);
    emit_batch_.op = Op::emit;
}

std::string PresencePublisher::session_key() const { return "lifeline:sessions:{" + config_.gateway + "}"; }
std::string PresencePublisher::token(std::uint64_t conn) const { return run_ + " " + std::to_string(conn); }

std::uint16_t PresencePublisher::node_of(const std::string& id) const {
    return node_of_slot_.empty() ? 0 : node_of_slot_[redis_key_slot(rec_key(id))];
}

std::vector<std::string> PresencePublisher::stream_args() const {
    return {config_.stream, seen_prefix_, num(static_cast<std::int64_t>(config_.stream_maxlen)),
            num(config_.offline_retention.ms())};
}

void PresencePublisher::on_topology(std::vector<std::uint16_t> node_of_slot) {
    if (node_of_slot.size() != kRedisSlots) node_of_slot.clear();
    node_of_slot_ = std::move(node_of_slot);
}

// ---- Session events -----------------------------------------------------------

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
    if (connected_) admit(key, conn);
}

// The session goes in this gateway's list first, so that a survivor finds it
// even if this gateway dies right after Redis admits it; the online follows
// the list's reply (on_index_reply).
void PresencePublisher::admit(const std::string& id, std::uint64_t conn) {
    index_batch_.push_back({id, token(conn), conn});
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
    const std::optional<std::uint64_t> epoch = presence_wire::parse_u64(message.substr(space + 1));
    auto it = live_.find(id);
    if (epoch && it != live_.end() && it->second.epoch == 0) {
        early_controls_[id] = *epoch;  // Came before our online's reply (another connection): applied with it.
        return;
    }
    if (!epoch || it == live_.end() || it->second.epoch != *epoch) return;  // Not (or no longer) ours.
    const std::uint64_t conn = it->second.conn;
    forget(id);
    unindex(session_key(), {{id, token(conn), conn}}, {});
    notice(PresenceNotice::Kind::replaced, id, conn, "another gateway admitted the same client id");
}

// ---- Connection ----------------------------------------------------------------

void PresencePublisher::on_connected(Instant now, std::int64_t unix_ms) {
    if (started_) ++counters_.reconnects;
    connected_ = true;
    last_unix_ms_ = unix_ms;
    last_now_ = now;
    resync_backoff_ = Duration::seconds(1);
    send({"FUNCTION", "LOAD", "REPLACE", std::string(presence_redis::library_source())}, {Op::load});
    commands_.back().every_node = true;
    if (!started_) {
        run_ = num(unix_ms);  // Tells this run's admissions from a previous run's.
        send({"HGET", "lifeline:gateways", config_.gateway}, {Op::last}, "lifeline:gateways");
    }
    // A previous run's sessions are gone: moved aside at the first call, then ended in batches.
    if (!self_reaped_) reap(config_.gateway, true, !renamed_, 0);
    started_ = true;
    heartbeat(unix_ms);
    // What ended while Redis was away goes first (older epochs), then the live
    // set, listed again and then written whole (fenced) since Redis may have
    // come back empty, then the admissions Redis never heard of.
    drain_queue();
    for (const std::string& id : order_) admit(id, live_[id].conn);
    for (std::string& event : std::exchange(carry_later_, {})) emit_batch_.events.push_back(std::move(event));
    for (auto& [list, entry] : std::exchange(unindex_later_, {})) unindex(list, {std::move(entry)}, {});
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
    auto keep = [&](std::uint64_t tag, Pending& p) {
        for (Offline& o : p.offs) unsent.emplace_back(tag, std::move(o));
        p.offs.clear();
        keep_for_reconnect(p);
    };
    for (auto& [tag, p] : in_flight_) keep(tag, p);
    keep(next_tag_, emit_batch_);
    for (auto& [list, p] : unindex_batch_) keep(next_tag_, p);
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
    index_batch_.clear();
    emit_batch_ = Pending{Op::emit};
    unindex_batch_.clear();
    reaping_.clear();
    next_tick_ = Instant::never();
    next_heartbeat_ = Instant::never();
    resync_at_ = Instant::never();
}

// Events being carried, and entries about to leave this gateway's list, are
// kept; a reap round is simply started again later.
void PresencePublisher::keep_for_reconnect(Pending& p) {
    if (p.op == Op::emit) carry_later_.insert(carry_later_.end(), p.events.begin(), p.events.end());
    auto keep = [&](const std::string& list, std::vector<Entry>& entries) {
        if (list != session_key()) return;
        for (Entry& e : entries) unindex_later_.emplace_back(list, std::move(e));
    };
    if (p.op == Op::unindex) keep(p.list, p.entries);
    for (auto& [list, entries] : p.then_unindex) keep(list, entries);
}

void PresencePublisher::drain_queue() {
    while (!queue_.empty()) {
        Offline o = std::move(queue_.front());
        queue_.pop_front();
        if (o.epoch != 0) {
            send_offline(o);
            continue;
        }
        // Admitted and gone while Redis was away: listed, online, then the offline with its epoch.
        admit(o.id, o.conn);
        waiting_.emplace(o.conn, std::move(o));
    }
}

// ---- Timers -------------------------------------------------------------------

Instant PresencePublisher::next_timeout() const { return std::min({next_tick_, next_heartbeat_, resync_at_}); }

void PresencePublisher::handle_timeout(Instant now, std::int64_t unix_ms) {
    last_unix_ms_ = unix_ms;
    if (!connected_) return;
    last_now_ = now;
    if (now >= resync_at_) {
        // Redis answered with errors: start again as after a reconnect (nothing is lost on the way).
        const Duration backoff = resync_backoff_;
        on_disconnected();
        on_connected(now, unix_ms);
        --counters_.reconnects;  // Not a reconnection.
        resync_backoff_ = std::min(backoff * 2, Duration::seconds(30));
        return;
    }
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
        if (now >= reap_from_) send({"HGETALL", "lifeline:gateways"}, {Op::gateways}, "lifeline:gateways");
        next_heartbeat_ = now + config_.ttl / 3;
    }
}

void PresencePublisher::heartbeat(std::int64_t unix_ms) {
    const std::string key = "lifeline:gateway:{" + config_.gateway + "}";
    send({"SET", key, num(unix_ms), "PX", num(config_.ttl.ms())}, {Op::heartbeat}, key);
    send({"HSET", "lifeline:gateways", config_.gateway, num(unix_ms)}, {Op::heartbeat}, "lifeline:gateways");
}

// ---- Commands -----------------------------------------------------------------

void PresencePublisher::send(std::vector<std::string> argv, Pending pending, std::string route) {
    const std::uint64_t tag = next_tag_++;
    in_flight_.emplace(tag, std::move(pending));
    commands_.push_back({std::move(argv), tag, std::move(route)});
    ++counters_.commands;
}

void PresencePublisher::send_online(const std::string& id, const Live& live) {
    Pending p{Op::online, id, live.conn};
    const std::string rec = rec_key(id);
    std::vector<std::string> argv = {"FCALL",
                                     "lifeline_online",
                                     "4",
                                     rec,
                                     rec + ":epoch",
                                     rec + ":admissions",
                                     rec + ":outbox",
                                     id,
                                     config_.gateway,
                                     num(live.conn),
                                     live.peer,
                                     num(live.since_ms),
                                     num(config_.ttl.ms()),
                                     run_};
    for (std::string& a : stream_args()) argv.push_back(std::move(a));
    send(std::move(argv), std::move(p), rec);
}

void PresencePublisher::send_offline(const Offline& o) {
    Pending p{Op::offline, o.id, o.conn};
    p.offs.push_back(o);
    const std::string rec = rec_key(o.id);
    std::vector<std::string> argv = {"FCALL",
                                     "lifeline_offline",
                                     "3",
                                     rec,
                                     rec + ":epoch",
                                     rec + ":outbox",
                                     o.id,
                                     num(o.epoch),
                                     o.reason,
                                     num(o.detected_after_ms),
                                     config_.gateway,
                                     o.peer,
                                     num(o.unix_ms)};
    for (std::string& a : stream_args()) argv.push_back(std::move(a));
    send(std::move(argv), std::move(p), rec);
}

// Batches go to the node that holds all of their ids: one per node per call.
void PresencePublisher::refresh_some(std::size_t count) {
    count = std::min(count, order_.size());
    NodeBatches batches({"FCALL", "lifeline_refresh", "0", config_.gateway, num(config_.ttl.ms())},
                        Pending{Op::refresh});
    auto send_batch = [this](auto&& b) { send(std::move(b.argv), std::move(b.pending), std::move(b.route)); };
    for (std::size_t i = 0; i < count; ++i) {
        if (cursor_ >= order_.size()) cursor_ = 0;
        const std::string& id = order_[cursor_++];
        const Live& live = live_[id];
        if (live.epoch == 0) continue;  // Its online is in flight.
        auto& b = batches.add(node_of(id), id);
        b.argv.insert(b.argv.end(), {id, num(live.epoch)});
        b.pending.batch.push_back(id);
        b.pending.batch_epochs.push_back(live.epoch);
        if (b.pending.batch.size() >= config_.batch) send_batch(std::exchange(b, {}));  // Full: the next begins anew.
    }
    batches.send_all(send_batch);
}

// The entries whose records are gone, sent whole (still live here at the same epoch).
void PresencePublisher::restore(const std::vector<std::string>& ids, const std::vector<std::uint64_t>& epochs) {
    NodeBatches batches({"FCALL", "lifeline_restore", "0", config_.gateway, num(config_.ttl.ms()), run_},
                        Pending{Op::restore});
    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto it = live_.find(ids[i]);
        if (it == live_.end() || it->second.epoch != epochs[i]) continue;
        const Live& live = it->second;
        auto& b = batches.add(node_of(ids[i]), ids[i]);
        b.argv.insert(b.argv.end(), {ids[i], num(live.epoch), num(live.conn), live.peer, num(live.since_ms)});
        b.pending.batch.push_back(ids[i]);
        b.pending.batch_epochs.push_back(epochs[i]);
    }
    batches.send_all([this](auto&& b) { send(std::move(b.argv), std::move(b.pending), std::move(b.route)); });
}

std::vector<RedisCommand> PresencePublisher::take_commands() {
    flush_batches();
    return std::exchange(commands_, {});
}
std::vector<PresenceNotice> PresencePublisher::take_notices() { return std::exchange(notices_, {}); }

void PresencePublisher::notice(PresenceNotice::Kind kind, std::string id, std::uint64_t conn, std::string message) {
    notices_.push_back({kind, std::move(id), conn, std::move(message)});
}

}  // namespace lifeline
