// Small helpers shared by the two halves of PresencePublisher: numbers as
// Redis arguments, fields of Redis replies, and commands batched by node.
// Internal to src/core.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lifeline/engine/presence_publisher.hpp"

namespace lifeline::presence_wire {

inline std::string num(std::int64_t v) { return std::to_string(v); }
inline std::string num(std::uint64_t v) { return std::to_string(v); }

inline std::optional<std::uint64_t> parse_u64(std::string_view text) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return v;
}

// Element I of an array reply as an integer (a number sent as text counts); 0 if absent.
inline std::int64_t integer_at(const RedisValue& v, std::size_t i) {
    if (v.type != RedisValue::Type::array || i >= v.elements.size()) return 0;
    const RedisValue& e = v.elements[i];
    if (e.type == RedisValue::Type::integer) return e.integer;
    return static_cast<std::int64_t>(parse_u64(e.text).value_or(0));
}

inline std::string text_at(const RedisValue& v, std::size_t i) {
    if (v.type != RedisValue::Type::array || i >= v.elements.size()) return {};
    if (v.elements[i].type == RedisValue::Type::integer) return std::to_string(v.elements[i].integer);
    return v.elements[i].text;
}

// An id's record; its hash tag is the id, so all of the id's keys share its slot.
inline std::string rec_key(const std::string& id) { return "lifeline:{" + id + "}"; }

// Commands that carry many ids, one a node: in a cluster a command's keys
// must all be on one node, and an id's keys are all in its slot. A batch is
// routed by its first id's record. Pending is PresencePublisher's.
template <class Pending>
class NodeBatches {
public:
    struct Batch {
        std::vector<std::string> argv;  // The header, then each id's arguments.
        Pending pending;                // What its reply needs.
        std::string route;              // Empty: not begun.
    };
    // Every batch begins with HEADER and a copy of PENDING.
    NodeBatches(std::vector<std::string> header, Pending pending)
        : header_(std::move(header)), pending_(std::move(pending)) {}

    // NODE's batch, which ID joins (the caller adds its arguments); begun if need be.
    Batch& add(std::uint16_t node, const std::string& id) {
        Batch& b = by_node_[node];
        if (b.route.empty()) b = Batch{header_, pending_, rec_key(id)};
        return b;
    }
    // Every batch begun, to SEND(Batch&&), one each node; then there are none.
    template <class Send>
    void send_all(Send send) {
        for (auto& [node, b] : by_node_) {
            if (!b.route.empty()) send(std::exchange(b, Batch{}));
        }
    }

private:
    std::vector<std::string> header_;
    Pending pending_;
    std::unordered_map<std::uint16_t, Batch> by_node_;
};

}  // namespace lifeline::presence_wire
