#include "preload/preload_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace lifeline::preload {

namespace {
int log_fd = -1;
// What log_fd was opened on: a program that closes every descriptor (a
// daemon) and opens a socket in its place must never receive our lines.
dev_t log_dev = 0;
ino_t log_ino = 0;

// Out of the low numbers, which some programs expect to get themselves.
constexpr int kFirstLogDescriptor = 100;

bool still_our_log() {
    struct stat st {};
    return ::fstat(log_fd, &st) == 0 && st.st_dev == log_dev && st.st_ino == log_ino;
}

void append_escaped(std::string& out, std::string_view s) {
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
            out += buf;
        } else {
            out += c;
        }
    }
}
}  // namespace

JsonLine::JsonLine() : text_("{\"pid\":" + std::to_string(::getpid())) {}

void JsonLine::key(std::string_view k) {
    text_ += ",\"";
    append_escaped(text_, k);
    text_ += "\":";
}

JsonLine& JsonLine::field(std::string_view k, std::string_view value) {
    key(k);
    text_ += '"';
    append_escaped(text_, value);
    text_ += '"';
    return *this;
}

JsonLine& JsonLine::field(std::string_view k, std::int64_t value) {
    key(k);
    text_ += std::to_string(value);
    return *this;
}

JsonLine& JsonLine::flag(std::string_view k, bool value) {
    key(k);
    text_ += value ? "true" : "false";
    return *this;
}

JsonLine& JsonLine::keepalive(std::string_view k, const sys::EffectiveKeepalive& ka) {
    key(k);
    text_ += "{\"keepalive\":";
    text_ += ka.enabled ? "true" : "false";
    text_ += ",\"idle_s\":" + std::to_string(ka.idle.ns() / 1'000'000'000);
    text_ += ",\"interval_s\":" + std::to_string(ka.interval.ns() / 1'000'000'000);
    text_ += ",\"count\":" + std::to_string(ka.count);
    text_ += ",\"user_timeout_ms\":" + std::to_string(ka.user_timeout.ms()) + "}";
    return *this;
}

void open_log(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
        std::fprintf(stderr, "liblifeline_preload: cannot open LIFELINE_LOG=%s\n", path.c_str());
        if (fd >= 0) ::close(fd);
        return;
    }
    const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, kFirstLogDescriptor);
    if (high >= 0) {
        ::close(fd);
        log_fd = high;
    } else {
        log_fd = fd;
    }
    log_dev = st.st_dev;
    log_ino = st.st_ino;
}

bool log_enabled() { return log_fd >= 0; }

void write_log(const JsonLine& line) {
    if (log_fd < 0 || !still_our_log()) return;
    const std::string text = line.finish();
    // A short or failed write loses a log line, never the program's call.
    [[maybe_unused]] const ssize_t n = ::write(log_fd, text.data(), text.size());
}

}  // namespace lifeline::preload
