#include "runtime/line_writer.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>

#include "lifeline/check.hpp"

namespace lifeline::runtime {

namespace {
constexpr auto kFlushLimit = std::chrono::seconds(2);
// What a buffer keeps between batches: below kPageBackedBytes, so steady
// traffic (a few lines at a time) never maps or unmaps anything.
constexpr std::size_t kKeptCapacity = kPageBackedBytes / 2;

// Writes all of `bytes` unless the reader is gone or `deadline` passes. It
// waits for POLLOUT and writes at most PIPE_BUF at a time, so a write to a
// full pipe cannot block past the deadline even though stdout is a blocking fd
// (a pipe that polls writable has room for PIPE_BUF bytes).
bool write_all(int fd, std::string_view bytes, std::chrono::steady_clock::time_point deadline) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        int wait_ms = -1;
        if (deadline != std::chrono::steady_clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            wait_ms = static_cast<int>(left.count());
        }
        pollfd p{fd, POLLOUT, 0};
        const int ready = ::poll(&p, 1, wait_ms);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
        const ssize_t n = ::write(fd, bytes.data() + done, std::min<std::size_t>(bytes.size() - done, PIPE_BUF));
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return false;  // EPIPE and friends: nobody is reading any more.
    }
    return true;
}
}  // namespace

void* allocate_pages(std::size_t bytes) {
    void* block = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) throw std::bad_alloc();
    return block;
}

void free_pages(void* block, std::size_t bytes) {
    const int r = ::munmap(block, bytes);
    LIFELINE_CHECK(r == 0, "munmap fails only for a block that is not a mapping of ours");
}

AsyncLineWriter::AsyncLineWriter(int fd, std::size_t max_buffered_bytes)
    : fd_(fd), max_buffered_bytes_(max_buffered_bytes), thread_([this] { run(); }) {}

AsyncLineWriter::~AsyncLineWriter() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void AsyncLineWriter::write(std::string_view line) {
    {
        std::lock_guard lock(mutex_);
        if (pending_.size() + line.size() + 1 > max_buffered_bytes_) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        pending_.append(line);
        pending_.push_back('\n');
    }
    wake_.notify_one();
}

void AsyncLineWriter::run() {
    Buffer batch;
    bool reader_gone = false;
    while (true) {
        bool stopping = false;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
            batch.swap(pending_);
            stopping = stopping_;
        }
        // Blocking writes (stdout is a blocking fd); bounded once we are stopping.
        const auto deadline =
            stopping ? std::chrono::steady_clock::now() + kFlushLimit : std::chrono::steady_clock::time_point::max();
        if (!reader_gone && !batch.empty() && !write_all(fd_, batch, deadline)) reader_gone = true;
        // Give back what a burst (say, 19,000 hello events) grew the buffer
        // to. By swapping: assigning an empty string keeps the old buffer
        // (libstdc++ copies a short string into the room it already has).
        if (batch.capacity() > kKeptCapacity) {
            Buffer().swap(batch);
        } else {
            batch.clear();
        }
        const std::uint64_t dropped = dropped_.load(std::memory_order_relaxed);
        if (dropped != dropped_reported_) {
            std::fprintf(stderr, "lifeline: %llu event lines dropped: stdout is not being read fast enough\n",
                         static_cast<unsigned long long>(dropped - dropped_reported_));
            dropped_reported_ = dropped;
        }
        if (stopping) {
            Buffer rest;
            {
                std::lock_guard lock(mutex_);
                rest.swap(pending_);
            }
            if (!reader_gone && !rest.empty()) write_all(fd_, rest, std::chrono::steady_clock::now() + kFlushLimit);
            return;
        }
    }
}

}  // namespace lifeline::runtime
