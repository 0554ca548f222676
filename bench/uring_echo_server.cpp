// The io_uring floor: the same timer-less echo as floor_echo_server, with no
// system call per connection at all. One ring, one io_uring_enter per loop
// turn: a multishot accept, a multishot receive per connection picking its
// buffer from a shared buffer ring (so an idle connection holds no buffer),
// and each echo sent straight from the buffer it arrived in. It shows what
// io_uring alone saves on this machine's kernel, next to the epoll floor.
//
//   uring_echo_server --listen 127.0.0.1:0
//   -> prints "listening 127.0.0.1:PORT" once listening; SIGTERM or SIGINT ends it.
//
// A benchmark baseline, not product code: self-contained (liburing only).
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "echo_baseline.hpp"

namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kBuffers = 4096;  // Power of two (the buffer ring's size).
constexpr unsigned kBufferSize = 2048;
constexpr int kBufferGroup = 0;
constexpr int kBacklog = 4096;

// user_data: the operation in the top byte, the buffer id in the next 16 bits, the fd below.
enum Op : std::uint64_t { kAccept = 1, kRecv = 2, kSend = 3, kSignal = 4 };
std::uint64_t tag(Op op, int fd, unsigned buffer = 0) {
    return (static_cast<std::uint64_t>(op) << 56) | (static_cast<std::uint64_t>(buffer) << 32) |
           static_cast<std::uint32_t>(fd);
}
Op op_of(std::uint64_t data) { return static_cast<Op>(data >> 56); }
int fd_of(std::uint64_t data) { return static_cast<int>(data & 0xffffffffu); }
unsigned buffer_of(std::uint64_t data) { return static_cast<unsigned>((data >> 32) & 0xffffu); }

using echo_baseline::die;
using echo_baseline::die_code;
using echo_baseline::die_errno;
using echo_baseline::parse_listen;

struct Server {
    io_uring ring{};
    io_uring_buf_ring* buffer_ring = nullptr;
    char* buffers = nullptr;

    io_uring_sqe* sqe() {
        io_uring_sqe* s = io_uring_get_sqe(&ring);
        if (s == nullptr) {  // Submission queue full: hand it to the kernel and go on.
            io_uring_submit(&ring);
            s = io_uring_get_sqe(&ring);
        }
        if (s == nullptr) die("no submission queue entry");
        return s;
    }

    void give_back(unsigned id) {
        io_uring_buf_ring_add(buffer_ring, buffers + std::size_t{id} * kBufferSize, kBufferSize,
                              static_cast<unsigned short>(id), io_uring_buf_ring_mask(kBuffers), 0);
        io_uring_buf_ring_advance(buffer_ring, 1);
    }

    void arm_recv(int fd) {
        io_uring_sqe* s = sqe();
        io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = kBufferGroup;
        io_uring_sqe_set_data64(s, tag(kRecv, fd));
    }

    void setup_buffers() {
        const std::size_t ring_bytes = sizeof(io_uring_buf) * kBuffers;
        void* mem = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (mem == MAP_FAILED) die_code("mmap buffer ring", errno);
        buffer_ring = static_cast<io_uring_buf_ring*>(mem);
        io_uring_buf_ring_init(buffer_ring);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
        reg.ring_entries = kBuffers;
        reg.bgid = kBufferGroup;
        if (const int r = io_uring_register_buf_ring(&ring, &reg, 0); r < 0) die_code("register buffer ring", -r);
        buffers = static_cast<char*>(std::aligned_alloc(4096, std::size_t{kBuffers} * kBufferSize));
        for (unsigned id = 0; id < kBuffers; ++id) give_back(id);
    }

    // Returns false when the server should exit.
    bool handle(const io_uring_cqe& cqe, int listener) {
        const std::uint64_t data = io_uring_cqe_get_data64(&cqe);
        const int fd = fd_of(data);
        switch (op_of(data)) {
            case kSignal:
                return false;
            case kAccept:
                if (cqe.res >= 0) {
                    const int one = 1;
                    ::setsockopt(cqe.res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    arm_recv(cqe.res);
                }
                if (!(cqe.flags & IORING_CQE_F_MORE)) {  // The multishot accept ended (EMFILE...): re-arm.
                    io_uring_sqe* s = sqe();
                    io_uring_prep_multishot_accept(s, listener, nullptr, nullptr, SOCK_CLOEXEC);
                    io_uring_sqe_set_data64(s, tag(kAccept, listener));
                }
                return true;
            case kRecv:
                if (cqe.res > 0) {
                    const unsigned id = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
                    io_uring_sqe* s = sqe();
                    io_uring_prep_send(s, fd, buffers + std::size_t{id} * kBufferSize,
                                       static_cast<std::size_t>(cqe.res), MSG_NOSIGNAL);
                    io_uring_sqe_set_data64(s, tag(kSend, fd, id));
                    if (!(cqe.flags & IORING_CQE_F_MORE)) arm_recv(fd);
                } else if (cqe.res == -ENOBUFS) {
                    arm_recv(fd);  // Every buffer is in flight: try again next turn.
                } else {
                    ::close(fd);  // EOF or error. Sends still in flight hold their own file reference.
                }
                return true;
            case kSend:
                give_back(buffer_of(data));  // A failed echo is dropped, as in the epoll floor.
                return true;
        }
        return true;
    }
};

}  // namespace

int main(int argc, char** argv) {
    const std::string listen_text = echo_baseline::listen_argument(argc, argv, "uring_echo_server");
    echo_baseline::raise_fd_limit();

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) die_code("sigprocmask", errno);
    const int signal_fd = ::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) die_code("signalfd", errno);

    sockaddr_in addr = parse_listen(listen_text);
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) die_code("socket", errno);
    const int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) die_code("bind", errno);
    if (::listen(listener, kBacklog) != 0) die_code("listen", errno);
    socklen_t addr_len = sizeof(addr);
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &addr_len);

    Server server;
    io_uring_params params{};
    // Completions are reaped only when we ask (one enter per turn), by this one thread.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = kRingEntries * 8;
    if (const int r = io_uring_queue_init_params(kRingEntries, &server.ring, &params); r < 0)
        die_code("io_uring_queue_init", -r);
    server.setup_buffers();
    io_uring_sqe* s = server.sqe();
    io_uring_prep_multishot_accept(s, listener, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, tag(kAccept, listener));
    s = server.sqe();
    io_uring_prep_poll_add(s, signal_fd, POLLIN);
    io_uring_sqe_set_data64(s, tag(kSignal, signal_fd));

    char host[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &addr.sin_addr, host, sizeof(host));
    std::printf("listening %s:%u\n", host, static_cast<unsigned>(ntohs(addr.sin_port)));
    std::fflush(stdout);

    for (;;) {
        const int r = io_uring_submit_and_wait(&server.ring, 1);
        if (r < 0 && r != -EINTR) die_code("io_uring_submit_and_wait", -r);
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_cqe* cqe = nullptr;
        bool running = true;
        io_uring_for_each_cqe(&server.ring, head, cqe) {
            ++seen;
            if (!server.handle(*cqe, listener)) running = false;
        }
        io_uring_cq_advance(&server.ring, seen);
        if (!running) {
            std::fprintf(stderr, "uring_echo_server: signal received, exiting\n");
            return 0;
        }
    }
}
