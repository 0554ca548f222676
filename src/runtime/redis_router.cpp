// See redis_router.hpp. The slot map comes from CLUSTER SLOTS: for each range,
// {first slot, last slot, {host, port, id, ...} of its master, replicas...}.
#include "runtime/redis_router.hpp"

#include <algorithm>

namespace lifeline::runtime {

namespace {

constexpr Duration kRemapHold = Duration::seconds(1);
constexpr Duration kMaxRemapHold = Duration::seconds(30);
constexpr std::uint64_t kSlotsTag = std::uint64_t{1} << 62;  // Above the publisher's tags, below the subscriber's.

// The map is out of date (MOVED; a function told a key is not on its node:
// a batch built on an old map) or the cluster is broken (CLUSTERDOWN). ASK
// and TRYAGAIN (a slot being migrated) are not: the map is still right, and
// the publisher retries what failed.
bool remap_needed(const RedisValue& v) {
    if (v.type != RedisValue::Type::error) return false;
    for (const char* word : {"MOVED ", "CLUSTERDOWN"}) {
        if (v.text.rfind(word, 0) == 0) return true;
    }
    return v.text.find("non local key") != std::string::npos;
}

std::string key_of(const RedisAddress& a) { return a.host + ":" + std::to_string(a.port); }

}  // namespace

RedisRouter::RedisRouter(EventLoop& loop, RedisAddress seed, Duration reply_timeout, Callbacks callbacks)
    : loop_(loop), reply_timeout_(reply_timeout), callbacks_(std::move(callbacks)) {
    seed_ = make_link(std::move(seed));
}

std::unique_ptr<RedisLink> RedisRouter::make_link(RedisAddress address) {
    std::string key = key_of(address);
    return std::make_unique<RedisLink>(
        loop_, std::move(address), reply_timeout_,
        RedisLink::Callbacks{[this] { on_link_ready(); },
                             [this, key = std::move(key)](const std::string& why) { on_link_down(key, why); },
                             [this](std::uint64_t tag, const RedisValue& v) { on_link_reply(tag, v); }});
}

void RedisRouter::start() { seed_->start(); }

// The map is read from the seed, or from any master that answers (the seed
// may be the master that failed over).
void RedisRouter::on_link_ready() {
    if (loop_.now() < hold_until_) return;  // on_timer() comes back.
    if (!mapped_) {
        if (querying_) return;
        if (seed_->ready()) {
            querying_ = seed_->send({{"CLUSTER", "SLOTS"}, kSlotsTag + ++query_});
            return;
        }
        for (const std::unique_ptr<RedisLink>& link : masters_) {
            if (link->ready()) {
                querying_ = link->send({{"CLUSTER", "SLOTS"}, kSlotsTag + ++query_});
                return;
            }
        }
        return;
    }
    become_ready();
}

void RedisRouter::become_ready() {
    if (ready_) return;
    for (RedisLink* link : nodes_) {
        if (!link->ready()) return;
    }
    ready_ = true;
    callbacks_.ready(node_of_slot_);
}

// Once mapped, only the masters count: the seed (not a master any more) or a
// link that left the map keeps retrying on its own, and must not make the
// gateway resend its state at every retry.
void RedisRouter::on_link_down(const std::string& key, const std::string& why) {
    if (mapped_ &&
        std::none_of(nodes_.begin(), nodes_.end(), [&](const RedisLink* l) { return key_of(l->address()) == key; }))
        return;
    lose(why);
}

// Down until every master answers again, and the map is read again then.
void RedisRouter::lose(const std::string& why, Duration hold) {
    const bool was_ready = ready_;
    if (hold > Duration::zero()) {
        hold_until_ = loop_.now() + hold;
        loop_.schedule(*this, hold_until_);
    }
    ready_ = false;
    mapped_ = false;
    querying_ = false;
    broadcasts_.clear();
    if (was_ready || callbacks_.down) callbacks_.down(why);
    on_link_ready();
}

void RedisRouter::on_link_reply(std::uint64_t tag, const RedisValue& v) {
    if ((tag & kSlotsTag) != 0 && tag < kSlotsTag * 2) {
        // Only the latest query's: an older one may have come on a link that is gone from the map.
        if (tag == kSlotsTag + query_) on_slots(v);
        return;
    }
    if (auto b = broadcasts_.find(tag); b != broadcasts_.end()) {
        if (b->second.reply.type != RedisValue::Type::error) b->second.reply = v;
        if (--b->second.waiting > 0) return;
        const RedisValue reply = std::move(b->second.reply);
        broadcasts_.erase(b);
        callbacks_.reply(tag, reply);
        return;
    }
    callbacks_.reply(tag, v);
    if (remap_needed(v) && ready_) {
        // A second, doubling (to 30 s) while the cluster keeps saying so within a minute.
        remap_hold_ =
            loop_.now() - last_remap_ > Duration::seconds(60) ? kRemapHold : std::min(remap_hold_ * 2, kMaxRemapHold);
        last_remap_ = loop_.now();
        lose("the cluster's slot map changed (" + v.text + ")", remap_hold_);
    }
}

void RedisRouter::on_slots(const RedisValue& v) {
    querying_ = false;
    std::vector<std::uint16_t> map;
    std::vector<RedisAddress> addresses;
    if (v.type == RedisValue::Type::array) {
        map.assign(kRedisSlots, 0);
        for (const RedisValue& range : v.elements) {
            if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) continue;
            const RedisValue& master = range.elements[2];
            RedisAddress a;
            a.host = master.elements[0].text.empty() ? seed_->address().host : master.elements[0].text;
            a.port = static_cast<int>(master.elements[1].integer);
            auto at = std::find_if(addresses.begin(), addresses.end(),
                                   [&](const RedisAddress& b) { return b.host == a.host && b.port == a.port; });
            const auto node = static_cast<std::uint16_t>(at - addresses.begin());
            if (at == addresses.end()) addresses.push_back(a);
            const std::int64_t first = std::clamp<std::int64_t>(range.elements[0].integer, 0, kRedisSlots - 1);
            const std::int64_t last = std::clamp<std::int64_t>(range.elements[1].integer, first, kRedisSlots - 1);
            std::fill(map.begin() + first, map.begin() + last + 1, node);
        }
    }
    // Links are kept for masters that stay; the others go (not the one this reply came on: it is in use).
    std::vector<std::unique_ptr<RedisLink>> kept;
    nodes_.clear();
    for (const RedisAddress& a : addresses) {
        if (a.host == seed_->address().host && a.port == seed_->address().port) {
            nodes_.push_back(seed_.get());
            continue;
        }
        auto old = std::find_if(masters_.begin(), masters_.end(), [&](const std::unique_ptr<RedisLink>& l) {
            return l && l->address().host == a.host && l->address().port == a.port;
        });
        if (old != masters_.end()) {
            kept.push_back(std::move(*old));
        } else {
            kept.push_back(make_link(a));
            kept.back()->start();
        }
        nodes_.push_back(kept.back().get());
    }
    // Dropped links are freed at the next map: this reply may be running on one of them.
    retired_.clear();
    for (std::unique_ptr<RedisLink>& link : masters_) {
        if (link) retired_.push_back(std::move(link));
    }
    masters_ = std::move(kept);
    if (addresses.empty()) nodes_ = {seed_.get()};  // A plain redis-server (CLUSTER SLOTS refused).
    node_of_slot_ = addresses.empty() ? std::vector<std::uint16_t>{} : std::move(map);
    mapped_ = true;
    become_ready();
}

std::optional<RedisAddress> RedisRouter::ready_node() const {
    for (const RedisLink* link : nodes_) {
        if (link->ready()) return link->address();
    }
    return std::nullopt;
}

RedisLink& RedisRouter::link_of(const std::string& route) {
    if (route.empty() || node_of_slot_.empty()) return *nodes_.front();
    return *nodes_[node_of_slot_[redis_key_slot(route)]];
}

bool RedisRouter::send(const RedisCommand& command) {
    if (!ready_) return false;
    if (!command.every_node) return link_of(command.route).send(command);
    Broadcast& b = broadcasts_[command.tag];
    for (RedisLink* link : nodes_) b.waiting += link->send(command) ? 1 : 0;
    if (b.waiting == 0) broadcasts_.erase(command.tag);
    return true;
}

}  // namespace lifeline::runtime
