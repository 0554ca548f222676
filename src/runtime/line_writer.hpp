// Writes lines to a file descriptor from a thread of its own, so an event loop
// never blocks because whoever reads our stdout is slow. Bounded: lines that
// would take the backlog past `max_buffered_bytes` are dropped and counted, and
// a note on stderr says how many. Used by `lifeline serve` and `connect` for
// their events; usable by any embedder with the same concern.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace lifeline::runtime {

class AsyncLineWriter {
public:
    explicit AsyncLineWriter(int fd, std::size_t max_buffered_bytes = 16 << 20);
    // Writes what is still buffered (for at most `flush_limit_ms`), then stops.
    ~AsyncLineWriter();
    AsyncLineWriter(const AsyncLineWriter&) = delete;
    AsyncLineWriter& operator=(const AsyncLineWriter&) = delete;

    // Thread-safe; never blocks on I/O. Appends '\n'.
    void write(std::string_view line);
    std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

private:
    void run();

    int fd_;
    std::size_t max_buffered_bytes_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::string pending_;
    bool stopping_ = false;
    std::atomic<std::uint64_t> dropped_{0};
    std::uint64_t dropped_reported_ = 0;
    std::thread thread_;
};

}  // namespace lifeline::runtime
