#include "runtime/output_queue.hpp"

#include <sys/socket.h>

#include <cassert>
#include <cerrno>

#include "lifeline/check.hpp"

namespace lifeline::runtime {

void OutputQueue::push(std::span<const std::uint8_t> bytes, bool control, bool already_started) {
    if (already_started) {
        LIFELINE_CHECK(current_pos_ == current_.size(), "the frame being sent is finished before the next");
        current_.assign(bytes.begin(), bytes.end());
        current_pos_ = 0;
        return;
    }
    std::vector<std::uint8_t>& target = control ? control_ : data_;
    target.insert(target.end(), bytes.begin(), bytes.end());
}

std::size_t OutputQueue::queued_bytes() const {
    return (current_.size() - current_pos_) + control_.size() + (data_.size() - data_pos_);
}

std::size_t OutputQueue::next_data_len() const {
    const std::size_t len = data_.size() - data_pos_;
    if (!framed_) return len;  // Raw bytes: no boundaries to keep.
    LIFELINE_CHECK(len >= 4, "a queued frame has its 4-byte length header");
    const std::uint8_t* p = data_.data() + data_pos_;
    const std::size_t frame =
        4 + ((std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3]);
    LIFELINE_CHECK(frame <= len, "a frame lies within the queued bytes");
    return frame;
}

bool OutputQueue::load_next(std::size_t batch) {
    current_.clear();
    current_pos_ = 0;
    if (!control_.empty()) {
        current_.swap(control_);  // All pending control frames: small, and boundaries are kept.
        if (batch == 0) return true;
    }
    if (data_pos_ == data_.size()) {
        if (!current_.empty()) return true;
        data_ = {};  // Release the memory: an idle connection owns no buffer.
        data_pos_ = 0;
        current_ = {};
        return false;
    }
    // One DATA frame, or (batch) as many whole ones as fit in `batch` bytes.
    while (data_pos_ < data_.size()) {
        const std::size_t len = next_data_len();
        if (!current_.empty() && current_.size() + len > batch) break;
        current_.insert(current_.end(), data_.begin() + static_cast<std::ptrdiff_t>(data_pos_),
                        data_.begin() + static_cast<std::ptrdiff_t>(data_pos_ + len));
        data_pos_ += len;
        if (batch == 0) break;
    }
    // Under a steady backlog the queue never empties: drop the sent prefix once
    // it is most of the buffer, so memory follows what is queued, not what was sent.
    if (data_pos_ > data_.size() / 2) {
        data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(data_pos_));
        data_pos_ = 0;
    }
    return true;
}

std::span<const std::uint8_t> OutputQueue::front(std::size_t batch) {
    if (current_pos_ == current_.size() && !load_next(batch)) return {};
    return {current_.data() + current_pos_, current_.size() - current_pos_};
}

OutputQueue::FlushResult OutputQueue::flush(int fd) {
    FlushResult r;
    while (true) {
        const std::span<const std::uint8_t> next = front();
        if (next.empty()) return r;
        const ssize_t n = ::send(fd, next.data(), next.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                r.would_block = true;
            } else {
                r.error = errno;
            }
            return r;
        }
        consume(static_cast<std::size_t>(n));
        r.written += static_cast<std::size_t>(n);
    }
}

}  // namespace lifeline::runtime
