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
#include <new>
#include <string>
#include <string_view>
#include <thread>

namespace lifeline::runtime {

// Blocks of at least kPageBackedBytes are page mappings of their own, so
// freeing one gives its memory back to the system at once; smaller ones come
// from operator new. A burst of events (19,000 hellos) grows the writer's
// buffers to hundreds of KiB: from malloc's heap, that memory stayed resident
// after the burst, as free space between live allocations (about 15 bytes
// per connection: docs/BENCHMARKS.md, "Where an idle connection's bytes go").
inline constexpr std::size_t kPageBackedBytes = 16 * 1024;
void* allocate_pages(std::size_t bytes);  // Throws std::bad_alloc.
void free_pages(void* block, std::size_t bytes);

template <class T>
struct PageBackedAllocator {
    using value_type = T;
    PageBackedAllocator() = default;
    template <class U>
    PageBackedAllocator(const PageBackedAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        if (n * sizeof(T) >= kPageBackedBytes) return static_cast<T*>(allocate_pages(n * sizeof(T)));
        return static_cast<T*>(::operator new(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (n * sizeof(T) >= kPageBackedBytes) {
            free_pages(p, n * sizeof(T));
        } else {
            ::operator delete(p);
        }
    }
    template <class U>
    bool operator==(const PageBackedAllocator<U>&) const noexcept {
        return true;
    }
};

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
    using Buffer = std::basic_string<char, std::char_traits<char>, PageBackedAllocator<char>>;
    void run();

    int fd_;
    std::size_t max_buffered_bytes_;
    std::mutex mutex_;
    std::condition_variable wake_;
    Buffer pending_;
    bool stopping_ = false;
    std::atomic<std::uint64_t> dropped_{0};
    std::uint64_t dropped_reported_ = 0;
    std::thread thread_;
};

}  // namespace lifeline::runtime
