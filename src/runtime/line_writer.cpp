#include "runtime/line_writer.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

namespace lifeline::runtime {

namespace {
constexpr auto kFlushLimit = std::chrono::seconds(2);
constexpr std::size_t kKeptCapacity = 64 * 1024;

// Writes all of `bytes` unless the reader is gone or `deadline` passes.
bool write_all(int fd, const std::string& bytes, std::chrono::steady_clock::time_point deadline) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{fd, POLLOUT, 0};
            ::poll(&p, 1, static_cast<int>(left.count()));
            continue;
        }
        return false;  // EPIPE and friends: nobody is reading any more.
    }
    return true;
}
}  // namespace

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
    std::string batch;
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
        const auto deadline = stopping ? std::chrono::steady_clock::now() + kFlushLimit
                                       : std::chrono::steady_clock::time_point::max();
        if (!reader_gone && !batch.empty() && !write_all(fd_, batch, deadline)) reader_gone = true;
        // Give back what a burst (say, 19,000 hello events) grew the buffer to.
        if (batch.capacity() > kKeptCapacity) {
            batch = std::string();
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
            std::lock_guard lock(mutex_);
            if (!reader_gone && !pending_.empty()) write_all(fd_, pending_, std::chrono::steady_clock::now() + kFlushLimit);
            return;
        }
    }
}

}  // namespace lifeline::runtime
