#include "runtime/io_ring.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifndef LIFELINE_WITH_URING
#define LIFELINE_WITH_URING 1
#endif

#if LIFELINE_WITH_URING
#include <liburing.h>
#else
struct io_uring {};  // Never made; complete so that ~IoRing's unique_ptr compiles.
#endif

namespace lifeline::runtime {

#if LIFELINE_WITH_URING

namespace {

constexpr unsigned kSubmissionEntries = 4096;
constexpr unsigned kCompletionEntries = 4 * kSubmissionEntries;
// Shared by every connection of the loop. 256 x 2 KiB = 512 KiB per loop: a
// heartbeat frame needs a few dozen bytes, larger messages take several
// buffers, and when all are in use a receive ends with ENOBUFS and is re-armed
// (the bytes wait in the socket).
constexpr unsigned kBuffers = 256;  // A power of two (the buffer ring's size).
constexpr std::size_t kBufferSize = 2048;
constexpr int kBufferGroup = 0;
// Deferred completions the kernel runs per enter that does not wait
// (IO_LOCAL_TW_DEFAULT_MAX in io_uring/tw.h, Linux 6.x).
constexpr int kDeferredPerEnter = 20;

// Completion tags: an owner's address with the operation in its low bits
// (LoopObjects are 8-byte aligned), or one of these, which no address is.
constexpr std::uint64_t kEpollTag = 4;   // The epoll set became readable.
constexpr std::uint64_t kCancelTag = 6;  // A cancellation finished (the cancelled operation reports itself).
constexpr std::uint64_t kOpMask = 7;

static_assert(alignof(LoopObject) > kOpMask, "an owner's address must leave the tag's op bits free");
static_assert(static_cast<std::uint64_t>(RingOp::receive) <= kOpMask &&
                  static_cast<std::uint64_t>(RingOp::send) <= kOpMask &&
                  static_cast<std::uint64_t>(RingOp::send) < kEpollTag,
              "ops fit the tag's low bits and differ from the epoll tag");

std::uint64_t tag(LoopObject& owner, RingOp op) {
    return reinterpret_cast<std::uintptr_t>(&owner) | static_cast<std::uint64_t>(op);
}

Error ring_error(const std::string& what, int error) {
    Error e = system_error(what +
                               " (io_uring needs Linux 6.1 or later and kernel.io_uring_disabled = 0; "
                               "the epoll back-end works everywhere)",
                           error);
    e.code = Errc::unsupported;  // What a caller can act on: use epoll instead.
    return e;
}

}  // namespace

Result<std::unique_ptr<IoRing>> IoRing::create(int epoll_fd) {
    std::unique_ptr<IoRing> ring(new IoRing());
    ring->epoll_fd_ = epoll_fd;
    ring->ring_ = std::make_unique<io_uring>();
    io_uring_params params{};
    // DEFER_TASKRUN: completions are run only when the loop enters the
    // kernel to reap them, and a wait for N completions sleeps until N are
    // pending, which is what lets a busy loop gather a window's worth
    // (EventLoop's coalescing). The kernel runs at most 20 of them per enter
    // that does not wait; dispatch() enters again while more are pending, or
    // a burst (10,000 sockets closing at once) queued ahead of a live peer's
    // PING would delay it for seconds.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
                   IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
    params.cq_entries = kCompletionEntries;
    if (const int r = io_uring_queue_init_params(kSubmissionEntries, ring->ring_.get(), &params); r < 0)
        return ring_error("io_uring_setup", -r);
    ring->ring_ready_ = true;

    ring->buffer_ring_bytes_ = sizeof(io_uring_buf) * kBuffers;
    void* mem = ::mmap(nullptr, ring->buffer_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return system_error("mmap (io_uring buffer ring)", errno);
    ring->buffer_ring_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(ring->buffer_ring_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
    reg.ring_entries = kBuffers;
    reg.bgid = kBufferGroup;
    if (const int r = io_uring_register_buf_ring(ring->ring_.get(), &reg, 0); r < 0)
        return ring_error("io_uring_register_buf_ring", -r);
    ring->buffers_.resize(kBuffers * kBufferSize);
    for (unsigned id = 0; id < kBuffers; ++id) ring->give_back(id);
    return ring;
}

IoRing::~IoRing() {
    if (ring_ready_) io_uring_queue_exit(ring_.get());
    if (buffer_ring_ != nullptr) ::munmap(buffer_ring_, buffer_ring_bytes_);
}

Result<void> IoRing::enable() {
    // Debian's liburing 2.3 declares io_uring_enable_rings() but does not export it.
    if (::syscall(__NR_io_uring_register, ring_->ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) != 0)
        return ring_error("io_uring_register(ENABLE_RINGS)", errno);
    arm_epoll_poll();
    return {};
}

io_uring_sqe* IoRing::next_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    if (sqe != nullptr) return sqe;
    // The submission queue is full: hand it to the kernel now (rare: it holds
    // 4096 and is emptied every turn).
    if (const int r = io_uring_submit(ring_.get()); r < 0) {
        std::fprintf(stderr, "lifeline: io_uring_submit: %s\n", std::strerror(-r));
        std::abort();  // Only EFAULT/EINVAL/EBADF-like errors: a bug, not a condition to ride out.
    }
    sqe = io_uring_get_sqe(ring_.get());
    if (sqe == nullptr) std::abort();  // Submitted, so there is room.
    return sqe;
}

void IoRing::arm_epoll_poll() {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_poll_multishot(sqe, epoll_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kEpollTag);
}

void IoRing::give_back(unsigned buffer_id) {
    io_uring_buf_ring_add(buffer_ring_, buffers_.data() + buffer_id * kBufferSize, kBufferSize,
                          static_cast<unsigned short>(buffer_id), io_uring_buf_ring_mask(kBuffers), 0);
    io_uring_buf_ring_advance(buffer_ring_, 1);
}

void IoRing::receive(int fd, LoopObject& owner) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, tag(owner, RingOp::receive));
}

void IoRing::send(int fd, std::span<const std::uint8_t> bytes, LoopObject& owner) {
    io_uring_sqe* sqe = next_sqe();
    // Not MSG_WAITALL: a send the socket cannot take whole completes short,
    // as send(2) would, which is how the owner learns its peer is behind.
    io_uring_prep_send(sqe, fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(owner, RingOp::send));
}

void IoRing::cancel_receive(LoopObject& owner) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_cancel64(sqe, tag(owner, RingOp::receive), 0);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    // Now, not at the next turn's enter: a multishot receive keeps filling
    // buffers while this turn dispatches (up to thousands of completions),
    // and each would be input taken from a peer we meant to stop reading.
    // Rare (a peer crossing its output budget), so the system call is cheap.
    io_uring_submit(ring_.get());
}

void IoRing::submit() { io_uring_submit(ring_.get()); }

bool IoRing::more_deferred(int reaped_since_enter) const {
    // The kernel flags pending deferred work; and an enter that ran a full
    // batch of it may have left more behind.
    return (IO_URING_READ_ONCE(*ring_->sq.kflags) & IORING_SQ_TASKRUN) != 0 || reaped_since_enter >= kDeferredPerEnter;
}

Result<void> IoRing::wait(Duration timeout, unsigned wanted) {
    int r = 0;
    if (timeout == Duration::zero()) {
        r = io_uring_submit_and_get_events(ring_.get());
    } else if (timeout < Duration::zero()) {
        r = io_uring_submit_and_wait(ring_.get(), wanted);
    } else {
        __kernel_timespec ts{};
        ts.tv_sec = timeout.ns() / 1'000'000'000;
        ts.tv_nsec = timeout.ns() % 1'000'000'000;
        io_uring_cqe* cqe = nullptr;
        r = io_uring_submit_and_wait_timeout(ring_.get(), &cqe, wanted, &ts, nullptr);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) return system_error("io_uring_enter", -r);
    return {};
}

int IoRing::dispatch(int limit, bool& epoll_ready) {
    epoll_ready = false;
    int dispatched = 0;
    int since_enter = 0;  // Completions reaped since the kernel last ran deferred ones.
    for (int i = 0; i < limit; ++i) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_peek_cqe(ring_.get(), &cqe) != 0 || cqe == nullptr) {
            if (!more_deferred(since_enter)) break;
            io_uring_get_events(ring_.get());
            since_enter = 0;
            if (io_uring_peek_cqe(ring_.get(), &cqe) != 0 || cqe == nullptr) break;
        }
        ++since_enter;
        const std::uint64_t data = cqe->user_data;
        const int result = cqe->res;
        const std::uint32_t flags = cqe->flags;
        io_uring_cqe_seen(ring_.get(), cqe);
        if (data == kCancelTag) continue;  // 0, -ENOENT (already ended) or -EALREADY: all fine.
        if (data == kEpollTag) {
            epoll_ready = true;
            if (!(flags & IORING_CQE_F_MORE)) arm_epoll_poll();
            continue;
        }
        auto* owner = reinterpret_cast<LoopObject*>(static_cast<std::uintptr_t>(data & ~kOpMask));
        RingCompletion completion{static_cast<RingOp>(data & kOpMask), result, (flags & IORING_CQE_F_MORE) != 0, {}};
        const bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
        const unsigned buffer_id = flags >> IORING_CQE_BUFFER_SHIFT;
        if (has_buffer && result > 0) {
            completion.bytes = {buffers_.data() + buffer_id * kBufferSize, static_cast<std::size_t>(result)};
        }
        // The owner may end (and free) itself here: nothing below touches it.
        owner->on_ring(completion);
        ++dispatched;
        if (has_buffer) give_back(buffer_id);
    }
    return dispatched;
}

#else  // !LIFELINE_WITH_URING

// Built with -DLIFELINE_WITH_URING=OFF or without liburing: no ring can be
// made, so the loop keeps its epoll back-end and nothing below is ever reached.
Result<std::unique_ptr<IoRing>> IoRing::create(int /*epoll_fd*/) {
    return make_error(Errc::unsupported, "built without liburing");
}

IoRing::~IoRing() = default;

Result<void> IoRing::enable() { return make_error(Errc::unsupported, "built without liburing"); }

void IoRing::receive(int /*fd*/, LoopObject& /*owner*/) { std::abort(); }

void IoRing::send(int /*fd*/, std::span<const std::uint8_t> /*bytes*/, LoopObject& /*owner*/) { std::abort(); }

void IoRing::cancel_receive(LoopObject& /*owner*/) { std::abort(); }

void IoRing::submit() {}

Result<void> IoRing::wait(Duration /*timeout*/, unsigned /*wanted*/) {
    return make_error(Errc::unsupported, "built without liburing");
}

int IoRing::dispatch(int /*limit*/, bool& epoll_ready) {
    epoll_ready = false;
    return 0;
}

#endif  // LIFELINE_WITH_URING

}  // namespace lifeline::runtime
