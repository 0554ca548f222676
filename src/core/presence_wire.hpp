// Small helpers shared by the two halves of PresencePublisher: numbers as
// Redis arguments, and fields of Redis replies. Internal to src/core.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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

}  // namespace lifeline::presence_wire
