// The Lua source of the Redis Functions library that fences fleet presence
// (see presence_redis_library.cpp for the keys). Internal to src/core.
#pragma once

#include <string_view>

namespace lifeline::presence_redis {

std::string_view library_source();

}  // namespace lifeline::presence_redis
