// PresencePublisher, second half: what Redis' replies mean, the reaping of
// dead gateways' sessions, and carrying events from outboxes to the stream
// (see core/presence_redis_library.cpp for why events can wait in one).
#include <algorithm>

#include "core/presence_wire.hpp"
#include "lifeline/engine/presence_publisher.hpp"

namespace lifeline {

namespace {

using presence_wire::integer_at;
using presence_wire::NodeBatches;
using presence_wire::num;
using presence_wire::text_at;

const RedisValue& element(const RedisValue& v, std::size_t i) {
    static const RedisValue kNone;
    return v.type == RedisValue::Type::array && i < v.elements.size() ? v.elements[i] : kNone;
}

}  // namespace

// ---- Batches built up during one turn ---------------------------------------

void PresencePublisher::flush_batches() {
    for (std::size_t at = 0; at < index_batch_.size(); at += config_.batch) {
        Pending p{Op::index};
        std::vector<std::string> argv = {"HSET", session_key()};
        for (std::size_t i = at; i < std::min(index_batch_.size(), at + config_.batch); ++i) {
            argv.insert(argv.end(), {index_batch_[i].id, index_batch_[i].token});
            p.entries.push_back(std::move(index_batch_[i]));
        }
        send(std::move(argv), std::move(p), session_key());
    }
    index_batch_.clear();
    Pending emit = std::exchange(emit_batch_, Pending{Op::emit});
    if (!emit.events.empty()) {
        // In calls of at most `batch` events (a resync may carry many); the last one finishes the rest.
        std::vector<std::string> events = std::move(emit.events);
        for (std::size_t at = 0; at < events.size(); at += config_.batch) {
            const std::size_t end = std::min(events.size(), at + config_.batch);
            Pending part = end == events.size() ? std::move(emit) : Pending{Op::emit};
            part.events.assign(std::make_move_iterator(events.begin() + static_cast<std::ptrdiff_t>(at)),
                               std::make_move_iterator(events.begin() + static_cast<std::ptrdiff_t>(end)));
            std::vector<std::string> argv = {"FCALL", "lifeline_emit", "1", config_.stream};
            for (std::string& a : stream_args()) argv.push_back(std::move(a));
            argv.insert(argv.end(), part.events.begin(), part.events.end());
            send(std::move(argv), std::move(part), config_.stream);
        }
    } else {
        for (auto& [list, entries] : emit.then_unindex)
            unindex(list, std::move(entries), list == session_key() ? std::move(emit.offs) : std::vector<Offline>{});
    }
    for (auto& [list, p] : std::exchange(unindex_batch_, {})) {
        std::vector<std::string> argv = {"FCALL", "lifeline_unindex", "1", list};
        for (const Entry& e : p.entries) argv.insert(argv.end(), {e.id, e.token});
        send(std::move(argv), std::move(p), list);
    }
}

// EVENTS (outbox entries a function returned) go to the stream; the ENTRIES
// leave LIST only once they are there, so that a survivor would still find them.
void PresencePublisher::carry(const RedisValue& events, const std::string& list, std::vector<Entry> entries,
                              std::vector<Offline> offs) {
    bool any = false;
    for (const RedisValue& e : events.elements) {
        if (e.type != RedisValue::Type::string) continue;
        emit_batch_.events.push_back(e.text);
        any = true;
    }
    if (!any) {
        if (!entries.empty() || !offs.empty()) unindex(list, std::move(entries), std::move(offs));
        return;
    }
    auto& then = emit_batch_.then_unindex[list];
    then.insert(then.end(), std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end()));
    emit_batch_.offs.insert(emit_batch_.offs.end(), std::make_move_iterator(offs.begin()),
                            std::make_move_iterator(offs.end()));
}

void PresencePublisher::unindex(const std::string& list, std::vector<Entry> entries, std::vector<Offline> offs) {
    Pending& p = unindex_batch_.try_emplace(list, Pending{Op::unindex}).first->second;
    p.list = list;
    p.entries.insert(p.entries.end(), std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end()));
    p.offs.insert(p.offs.end(), std::make_move_iterator(offs.begin()), std::make_move_iterator(offs.end()));
}

// ---- Replies ------------------------------------------------------------------

void PresencePublisher::on_reply(std::uint64_t tag, const RedisValue& reply) {
    auto it = in_flight_.find(tag);
    if (it == in_flight_.end()) return;  // Sent before a reconnect: already resent.
    Pending p = std::move(it->second);
    in_flight_.erase(it);
    if (reply.type == RedisValue::Type::error) {
        ++counters_.errors;
        notice(PresenceNotice::Kind::error, p.id, p.conn, "Redis: " + reply.text);
        return on_failed(p);
    }
    switch (p.op) {
        case Op::last:
            previous_heartbeat_ms_ = static_cast<std::int64_t>(presence_wire::parse_u64(reply.text).value_or(0));
            return;
        case Op::index:
            return on_index_reply(p);
        case Op::online:
            return on_online_reply(p, reply);
        case Op::offline:
            return on_offline_reply(p, reply);
        case Op::refresh:
        case Op::restore:
            return on_refresh_reply(p, reply);
        case Op::gateways:
            return on_gateways_reply(reply);
        case Op::reap_list:
            return on_reap_list_reply(p, reply);
        case Op::reap_ids:
            return on_reap_ids_reply(p, reply);
        case Op::emit:
            return on_emit_reply(p, reply);
        case Op::unindex:
            return on_unindex_reply(p);
        default:
            return;
    }
}

// An error reply: what it was carrying is kept, and sent again at a resync
// soon (a second, doubling up to 30 s while errors go on).
void PresencePublisher::on_failed(Pending& p) {
    for (const Offline& o : p.offs) queue_offline(o);
    p.offs.clear();
    keep_for_reconnect(p);
    if (p.op == Op::reap_list || p.op == Op::reap_ids || p.op == Op::unindex) reaping_.erase(p.list);
    for (const auto& [list, entries] : p.then_unindex) reaping_.erase(list);
    if (resync_at_ == Instant::never()) resync_at_ = last_now_ + resync_backoff_;
}

// Listed: now Redis may admit them (or, after a reconnect, have them back whole).
void PresencePublisher::on_index_reply(const Pending& p) {
    std::vector<std::string> ids;
    std::vector<std::uint64_t> epochs;
    std::vector<std::pair<std::string, Live>> admissions;
    for (const Entry& e : p.entries) {
        if (auto w = waiting_.find(e.conn); w != waiting_.end()) {
            const Offline& o = w->second;  // Gone before Redis heard of it: online, then its offline.
            admissions.emplace_back(o.id, Live{o.conn, 0, o.peer, o.since_ms, 0});
            continue;
        }
        auto it = live_.find(e.id);
        if (it == live_.end() || it->second.conn != e.conn) continue;
        if (it->second.epoch == 0) {
            admissions.emplace_back(e.id, it->second);
        } else {
            ids.push_back(e.id);
            epochs.push_back(it->second.epoch);
        }
    }
    restore(ids, epochs);  // The live set first, then what Redis never heard of.
    for (const auto& [id, live] : admissions) send_online(id, live);
}

void PresencePublisher::on_online_reply(const Pending& p, const RedisValue& reply) {
    ++counters_.onlines;
    const auto epoch = static_cast<std::uint64_t>(integer_at(reply, 0));
    const bool superseded = integer_at(reply, 3) == 1;  // A resent online: another session took the id since.
    const Entry entry{p.id, token(p.conn), p.conn};
    if (auto w = waiting_.find(p.conn); w != waiting_.end()) {
        Offline o = std::move(w->second);
        waiting_.erase(w);
        o.epoch = epoch;
        if (superseded) {  // Redis recorded its end when the id was taken.
            carry(element(reply, 4), session_key(), {entry}, {});
        } else {
            carry(element(reply, 4), session_key(), {}, {});
            send_offline(o);
        }
        return;
    }
    carry(element(reply, 4), session_key(), {}, {});
    auto it = live_.find(p.id);
    if (it == live_.end() || it->second.conn != p.conn) return;
    it->second.epoch = epoch;
    const auto control = early_controls_.find(p.id);
    const bool replaced = control != early_controls_.end() && control->second == epoch;
    if (control != early_controls_.end()) early_controls_.erase(control);
    if (superseded || replaced) {
        forget(p.id);
        unindex(session_key(), {entry}, {});
        notice(PresenceNotice::Kind::replaced, p.id, p.conn,
               "another session took this id while its online was in flight");
    }
}

void PresencePublisher::on_offline_reply(const Pending& p, const RedisValue& reply) {
    ++counters_.offlines;
    if (integer_at(reply, 0) == 0) ++counters_.fenced_out;
    carry(element(reply, 1), session_key(), {{p.id, token(p.conn), p.conn}}, p.offs);
}

void PresencePublisher::on_refresh_reply(const Pending& p, const RedisValue& reply) {
    // refresh: {lost, missing}; restore: lost.
    const bool nested = p.op == Op::refresh;
    const RedisValue& lost = nested ? element(reply, 0) : reply;
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
        unindex(session_key(), {{id, token(conn), conn}}, {});
        notice(PresenceNotice::Kind::lost, id, conn, "Redis no longer holds this session (declared gone meanwhile)");
    }
    if (!nested) return;
    std::vector<std::string> ids;
    std::vector<std::uint64_t> epochs;
    for (const RedisValue& index : element(reply, 1).elements) {
        const auto at = static_cast<std::size_t>(index.integer);
        if (at == 0 || at > p.batch.size()) continue;
        ids.push_back(p.batch[at - 1]);
        epochs.push_back(p.batch_epochs[at - 1]);
    }
    restore(ids, epochs);
}

void PresencePublisher::on_emit_reply(const Pending& p, const RedisValue& reply) {
    // (id seq)* of what the stream has: those outbox entries can go.
    NodeBatches acks({"FCALL", "lifeline_ack", "0"}, Pending{Op::ack});
    for (std::size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
        const std::string id = text_at(reply, i);
        auto& b = acks.add(node_of(id), id);
        b.argv.insert(b.argv.end(), {id, text_at(reply, i + 1)});
    }
    acks.send_all([this](auto&& b) { send(std::move(b.argv), std::move(b.pending), std::move(b.route)); });
    for (const auto& [list, entries] : p.then_unindex)
        unindex(list, entries, list == session_key() ? p.offs : std::vector<Offline>{});
}

// ---- Dead gateways ----------------------------------------------------------

void PresencePublisher::on_gateways_reply(const RedisValue& reply) {
    for (std::size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
        const std::string gateway = text_at(reply, i);
        const auto last = static_cast<std::int64_t>(presence_wire::parse_u64(text_at(reply, i + 1)).value_or(0));
        if (gateway != config_.gateway) reap(gateway, false, false, last);
    }
}

// One round at a time per list: the next LIMIT entries, ended (reap_ids on
// their nodes), carried, unindexed; then the next round, until none is left.
void PresencePublisher::reap(const std::string& gateway, bool force, bool rename, std::int64_t last_heartbeat_ms) {
    const std::string live = "lifeline:sessions:{" + gateway + "}";
    const std::string list = force ? live + ":prev" : live;
    if (!reaping_.try_emplace(list, Reaping{gateway, force, last_heartbeat_ms, 0}).second) return;
    Pending p{Op::reap_list};
    p.list = list;
    send({"FCALL", "lifeline_reap_list", "3", "lifeline:gateway:{" + gateway + "}", list, live, num(last_unix_ms_),
          num(static_cast<std::int64_t>(config_.reap_limit)), force ? "1" : "0", num((config_.ttl / 3).ms()),
          rename ? "1" : "0", run_},
         std::move(p), list);
}

void PresencePublisher::next_reap_round(const std::string& list) {
    auto it = reaping_.find(list);
    if (it == reaping_.end()) return;
    const Reaping r = it->second;
    reaping_.erase(it);
    reap(r.gateway, r.force, false, r.last_heartbeat_ms);
}

void PresencePublisher::on_reap_list_reply(const Pending& p, const RedisValue& reply) {
    auto it = reaping_.find(p.list);
    if (it == reaping_.end()) return;
    Reaping& r = it->second;
    const std::int64_t left = integer_at(reply, 0);  // -1 alive, -2 stale: nothing to do.
    if (r.force && left >= 0) renamed_ = true;
    if (left <= 0 || reply.elements.size() < 3) {
        if (left == 0 && r.force) self_reaped_ = true;
        if (left == 0 && !r.force) send({"HDEL", "lifeline:gateways", r.gateway}, {Op::other}, "lifeline:gateways");
        reaping_.erase(it);
        return;
    }
    const std::int64_t last = r.force ? previous_heartbeat_ms_ : r.last_heartbeat_ms;
    const std::string after = num(last > 0 ? std::max<std::int64_t>(0, last_unix_ms_ - last) : 0);
    std::vector<std::string> header = {"FCALL", "lifeline_reap_ids", "0", r.gateway, num(last_unix_ms_), after};
    for (std::string& a : stream_args()) header.push_back(std::move(a));
    Pending reap_ids{Op::reap_ids};
    reap_ids.list = p.list;
    NodeBatches batches(std::move(header), std::move(reap_ids));
    for (std::size_t i = 1; i + 1 < reply.elements.size(); i += 2) {
        const std::string id = text_at(reply, i);
        const std::string token = text_at(reply, i + 1);
        auto& b = batches.add(node_of(id), id);
        b.argv.insert(b.argv.end(), {id, token});
        b.pending.entries.push_back({id, token, 0});
        ++r.outstanding;
    }
    batches.send_all([this](auto&& b) { send(std::move(b.argv), std::move(b.pending), std::move(b.route)); });
}

void PresencePublisher::on_reap_ids_reply(const Pending& p, const RedisValue& reply) {
    counters_.reaped += static_cast<std::uint64_t>(std::max<std::int64_t>(0, integer_at(reply, 0)));
    RedisValue events;
    for (std::size_t i = 1; i < reply.elements.size(); ++i) events.elements.push_back(reply.elements[i]);
    carry(events, p.list, p.entries, {});
}

void PresencePublisher::on_unindex_reply(const Pending& p) {
    auto it = reaping_.find(p.list);
    if (it == reaping_.end()) return;
    it->second.outstanding -= std::min(it->second.outstanding, p.entries.size());
    if (it->second.outstanding == 0) next_reap_round(p.list);
}

}  // namespace lifeline
