// LIFELINE_LOG: one JSON object per line, one line per socket touched (and a
// first line for the start), each written with a single write() on an
// O_APPEND descriptor so that threads and forked children never interleave
// within a line. Internal to src/preload.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lifeline/sys/socket_options.hpp"

namespace lifeline::preload {

class JsonLine {
public:
    JsonLine();  // Starts with "pid".
    JsonLine& field(std::string_view key, std::string_view value);
    JsonLine& field(std::string_view key, std::int64_t value);
    JsonLine& flag(std::string_view key, bool value);
    // {"keepalive":bool,"idle_s":..,"interval_s":..,"count":..,"user_timeout_ms":..}
    JsonLine& keepalive(std::string_view key, const sys::EffectiveKeepalive& k);
    std::string finish() const { return text_ + "}\n"; }

private:
    void key(std::string_view k);
    std::string text_;
};

// Opens (creates, appends to) the log. Close-on-exec: a program that execs
// another gets a fresh library instance, which opens it again.
void open_log(const std::string& path);
bool log_enabled();
void write_log(const JsonLine& line);

}  // namespace lifeline::preload
