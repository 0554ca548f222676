// Integration tests for sock_diag on loopback: what the kernel reports through
// NETLINK_SOCK_DIAG agrees with getsockopt(TCP_INFO), with the keepalive options
// read back with getsockopt, and with the same options read from "another"
// process through pidfd_getfd (here: ourselves).
#include "net/sock_diag.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "lifeline/sys/tcp_info.hpp"

namespace lifeline::net {
namespace {

// Generous upper bound for events on loopback; the tests never sleep.
constexpr int kEventTimeoutMs = 5000;
constexpr int kBacklog = 8;

class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    Fd& operator=(Fd&& other) noexcept {
        std::swap(fd_, other.fd_);
        return *this;
    }
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

std::uint32_t state_bit(sys::TcpState state) { return 1u << static_cast<unsigned>(state); }

bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

sockaddr_storage loopback(int family, std::uint16_t port) {
    sockaddr_storage storage{};
    if (family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin->sin_port = htons(port);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        sin6->sin6_port = htons(port);
    }
    return storage;
}

socklen_t address_length(int family) { return family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6); }

std::uint16_t local_port(int fd) {
    sockaddr_storage storage{};
    socklen_t len = sizeof(storage);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len), 0) << std::strerror(errno);
    if (storage.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
    return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
}

std::uint64_t inode_of(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0) << std::strerror(errno);
    return st.st_ino;
}

// A listener, a connected client and the accepted server side, on loopback.
struct Connection {
    Fd listener;
    Fd client;
    Fd server;
    std::uint16_t listener_port = 0;
    std::uint16_t client_port = 0;
};

// Binds a listener on the loopback of `family`; returns the errno of a failed
// socket() or bind() so the IPv6 test can tell "no IPv6 here" from a bug.
int make_listener(int family, Connection& c) {
    c.listener = Fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (c.listener.get() < 0) return errno;
    const sockaddr_storage addr = loopback(family, 0);  // Port 0: an ephemeral port.
    if (::bind(c.listener.get(), reinterpret_cast<const sockaddr*>(&addr), address_length(family)) != 0) return errno;
    if (::listen(c.listener.get(), kBacklog) != 0) return errno;
    c.listener_port = local_port(c.listener.get());
    return 0;
}

void connect_client(int family, Connection& c) {
    c.client = Fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_GE(c.client.get(), 0) << std::strerror(errno);
    const sockaddr_storage addr = loopback(family, c.listener_port);
    ASSERT_EQ(::connect(c.client.get(), reinterpret_cast<const sockaddr*>(&addr), address_length(family)), 0)
        << std::strerror(errno);
    c.client_port = local_port(c.client.get());
}

void accept_server(Connection& c) {
    c.server = Fd(::accept4(c.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_GE(c.server.get(), 0) << std::strerror(errno);
}

void connect_pair(int family, Connection& c) {
    ASSERT_EQ(make_listener(family, c), 0);
    connect_client(family, c);
    accept_server(c);
}

KeepalivePolicy test_policy() {
    KeepalivePolicy policy;
    policy.idle = Duration::seconds(7);
    policy.interval = Duration::seconds(3);
    policy.count = 4;
    policy.user_timeout = UserTimeout::automatic();
    return policy;
}

std::vector<DiagSocket> dump(const DiagFilter& filter) {
    Result<std::vector<DiagSocket>> sockets = dump_tcp_sockets(filter);
    EXPECT_TRUE(sockets.ok()) << sockets.error().message;
    if (!sockets) return {};
    return std::move(sockets).value();
}

// The client's socket, found by both of its ports.
DiagFilter client_filter(const Connection& c) {
    DiagFilter filter;
    filter.ipv6 = false;
    filter.local_port = c.client_port;
    filter.remote_port = c.listener_port;
    return filter;
}

std::string own_comm() {
    std::ifstream in("/proc/self/comm");
    std::string comm;
    std::getline(in, comm);
    return comm;
}

TEST(SocketTimer, ToString) {
    EXPECT_EQ(to_string(SocketTimer::none), "none");
    EXPECT_EQ(to_string(SocketTimer::retransmit), "retransmit");
    EXPECT_EQ(to_string(SocketTimer::keepalive), "keepalive");
    EXPECT_EQ(to_string(SocketTimer::time_wait), "time_wait");
    EXPECT_EQ(to_string(SocketTimer::zero_window_probe), "zero_window_probe");
}

TEST(SocketAddress, ToString) {
    SocketAddress v4;
    v4.family = AF_INET;
    const std::uint8_t localhost[4] = {127, 0, 0, 1};
    std::memcpy(v4.addr, localhost, sizeof(localhost));
    v4.port = 8888;
    EXPECT_EQ(v4.to_string(), "127.0.0.1:8888");

    SocketAddress v6;
    v6.family = AF_INET6;
    std::memcpy(v6.addr, &in6addr_loopback, 16);
    v6.port = 8888;
    EXPECT_EQ(v6.to_string(), "[::1]:8888");

    // IPv4-mapped addresses on an IPv6 socket are printed as they are.
    SocketAddress mapped;
    mapped.family = AF_INET6;
    const std::uint8_t mapped_bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    std::memcpy(mapped.addr, mapped_bytes, sizeof(mapped_bytes));
    mapped.port = 80;
    EXPECT_EQ(mapped.to_string(), "[::ffff:127.0.0.1]:80");
}

TEST(SockDiag, NoFamilyNoSockets) {
    DiagFilter filter;
    filter.ipv4 = false;
    filter.ipv6 = false;
    EXPECT_TRUE(dump(filter).empty());
}

TEST(SockDiag, ClientShowsKeepaliveTimerAndMatchesTcpInfo) {
    Connection c;
    ASSERT_NO_FATAL_FAILURE(connect_pair(AF_INET, c));
    const KeepalivePolicy policy = test_policy();
    Result<sys::EffectiveKeepalive> applied = sys::apply_keepalive(c.client.get(), policy);
    ASSERT_TRUE(applied.ok()) << applied.error().message;

    DiagFilter filter = client_filter(c);
    filter.find_owners = true;
    const std::vector<DiagSocket> sockets = dump(filter);
    Result<sys::TcpInfo> direct = sys::read_tcp_info(c.client.get());
    ASSERT_TRUE(direct.ok()) << direct.error().message;
    ASSERT_EQ(sockets.size(), 1u);
    const DiagSocket& s = sockets[0];

    EXPECT_EQ(s.local.family, AF_INET);
    EXPECT_EQ(s.local.to_string(), "127.0.0.1:" + std::to_string(c.client_port));
    EXPECT_EQ(s.remote.to_string(), "127.0.0.1:" + std::to_string(c.listener_port));
    EXPECT_EQ(s.state, sys::TcpState::established);
    EXPECT_EQ(s.timer, SocketTimer::keepalive) << to_string(s.timer);
    EXPECT_GT(s.timer_expires, Duration::zero());
    EXPECT_LE(s.timer_expires, policy.idle) << lifeline::to_string(s.timer_expires);
    EXPECT_EQ(s.timer_retransmits, 0);
    EXPECT_EQ(s.receive_queue, 0u);
    EXPECT_EQ(s.send_queue, 0u);
    EXPECT_EQ(s.uid, ::geteuid());
    EXPECT_EQ(s.inode, inode_of(c.client.get()));

    ASSERT_TRUE(s.info.has_value());
    EXPECT_EQ(s.info->state, direct->state);
    // No segment carries an RTT sample between the two reads, so these agree;
    // the tolerance only absorbs a delayed ACK that might still arrive.
    const Duration tolerance = Duration::milliseconds(5);
    EXPECT_LE(s.info->rtt - direct->rtt, tolerance);
    EXPECT_LE(direct->rtt - s.info->rtt, tolerance);
    EXPECT_LE(s.info->rttvar - direct->rttvar, tolerance);
    EXPECT_LE(direct->rttvar - s.info->rttvar, tolerance);
    EXPECT_EQ(s.info->rto, direct->rto);
    EXPECT_EQ(s.info->unacked, direct->unacked);
    EXPECT_EQ(s.info->probes, direct->probes);
    EXPECT_EQ(s.info->total_retrans, direct->total_retrans);

    ASSERT_TRUE(s.owner.has_value());
    EXPECT_EQ(s.owner->pid, ::getpid());
    EXPECT_EQ(s.owner->fd, c.client.get());
    EXPECT_EQ(s.owner->command, own_comm());
}

TEST(SockDiag, AnyPortAndRemotePortFindBothEnds) {
    Connection c;
    ASSERT_NO_FATAL_FAILURE(connect_pair(AF_INET, c));

    DiagFilter by_remote;
    by_remote.ipv6 = false;
    by_remote.remote_port = c.listener_port;
    std::vector<DiagSocket> sockets = dump(by_remote);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].inode, inode_of(c.client.get()));
    EXPECT_EQ(sockets[0].local.port, c.client_port);

    // any_port = the listener's port: the listener, the accepted socket (local)
    // and the client (remote).
    DiagFilter by_any;
    by_any.ipv6 = false;
    by_any.any_port = c.listener_port;
    sockets = dump(by_any);
    ASSERT_EQ(sockets.size(), 3u);
    int listeners = 0, established = 0;
    for (const DiagSocket& s : sockets) {
        if (s.state == sys::TcpState::listen) ++listeners;
        if (s.state == sys::TcpState::established) ++established;
        if (s.inode == inode_of(c.server.get())) {
            // No keepalive on the server side: no timer armed.
            EXPECT_EQ(s.timer, SocketTimer::none) << to_string(s.timer);
            EXPECT_EQ(s.timer_expires, Duration::zero());
        }
    }
    EXPECT_EQ(listeners, 1);
    EXPECT_EQ(established, 2);
}

TEST(SockDiag, GetsockoptTcpInfoAndSockDiagAgreeOnKeepalive) {
    Connection c;
    ASSERT_NO_FATAL_FAILURE(connect_pair(AF_INET, c));
    const KeepalivePolicy policy = test_policy();
    Result<sys::EffectiveKeepalive> applied = sys::apply_keepalive(c.client.get(), policy);
    ASSERT_TRUE(applied.ok()) << applied.error().message;

    // View 1: getsockopt on our own descriptor.
    Result<sys::EffectiveKeepalive> direct = sys::read_keepalive(c.client.get());
    ASSERT_TRUE(direct.ok()) << direct.error().message;
    EXPECT_TRUE(direct->enabled);
    EXPECT_EQ(direct->idle, policy.idle);
    EXPECT_EQ(direct->interval, policy.interval);
    EXPECT_EQ(direct->count, policy.count);
    EXPECT_EQ(direct->user_timeout, policy.user_timeout_value());
    EXPECT_EQ(direct->user_timeout, Duration::seconds(7 + 3 * 4));

    // View 2: sock_diag finds the socket and its owner, and the owner's
    // descriptor, duplicated with pidfd_getfd, reads back the same options.
    DiagFilter filter = client_filter(c);
    filter.find_owners = true;
    const std::vector<DiagSocket> sockets = dump(filter);
    ASSERT_EQ(sockets.size(), 1u);
    const DiagSocket& s = sockets[0];
    ASSERT_TRUE(s.owner.has_value());
    Result<sys::EffectiveKeepalive> remote = read_owner_keepalive(*s.owner);
    ASSERT_TRUE(remote.ok()) << remote.error().message;
    EXPECT_EQ(remote->enabled, direct->enabled);
    EXPECT_EQ(remote->idle, direct->idle);
    EXPECT_EQ(remote->interval, direct->interval);
    EXPECT_EQ(remote->count, direct->count);
    EXPECT_EQ(remote->user_timeout, direct->user_timeout);

    // View 3: the armed timer is the keepalive timer, due within the idle time,
    // and no probe has gone out, as tcp_info says too.
    Result<sys::TcpInfo> info = sys::read_tcp_info(c.client.get());
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(s.timer, SocketTimer::keepalive) << to_string(s.timer);
    EXPECT_GT(s.timer_expires, Duration::zero());
    EXPECT_LE(s.timer_expires, direct->idle);
    EXPECT_EQ(s.timer_retransmits, info->probes);
    ASSERT_TRUE(s.info.has_value());
    EXPECT_EQ(s.info->probes, info->probes);
    EXPECT_EQ(info->probes, 0);
}

TEST(SockDiag, ListenerStateAndStateFilter) {
    Connection c;
    ASSERT_EQ(make_listener(AF_INET, c), 0);
    ASSERT_NO_FATAL_FAILURE(connect_client(AF_INET, c));
    // Readable listener = a connection waits in the accept queue.
    pollfd ready{c.listener.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&ready, 1, kEventTimeoutMs), 1) << std::strerror(errno);

    DiagFilter listeners;
    listeners.ipv6 = false;
    listeners.states = state_bit(sys::TcpState::listen);
    listeners.local_port = c.listener_port;
    std::vector<DiagSocket> sockets = dump(listeners);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].state, sys::TcpState::listen);
    EXPECT_EQ(sockets[0].inode, inode_of(c.listener.get()));
    EXPECT_EQ(sockets[0].remote.port, 0);
    // For a listener the queues are the accept queue and the backlog.
    EXPECT_EQ(sockets[0].receive_queue, 1u);
    EXPECT_EQ(sockets[0].send_queue, static_cast<std::uint32_t>(kBacklog));
    ASSERT_TRUE(sockets[0].info.has_value());
    EXPECT_EQ(sockets[0].info->state, sys::TcpState::listen);

    ASSERT_NO_FATAL_FAILURE(accept_server(c));
    sockets = dump(listeners);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].receive_queue, 0u);

    // Every state but established: the connection is hidden, the listener is not.
    DiagFilter not_established;
    not_established.ipv6 = false;
    not_established.states = ~state_bit(sys::TcpState::established);
    not_established.any_port = c.listener_port;
    sockets = dump(not_established);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].state, sys::TcpState::listen);

    DiagFilter client = client_filter(c);
    client.states = ~state_bit(sys::TcpState::established);
    EXPECT_TRUE(dump(client).empty());
    client.states = state_bit(sys::TcpState::established);
    EXPECT_EQ(dump(client).size(), 1u);
}

TEST(SockDiag, ReceiveQueueCountsUnreadBytes) {
    Connection c;
    ASSERT_NO_FATAL_FAILURE(connect_pair(AF_INET, c));
    const std::string payload(100, 'x');
    ASSERT_EQ(::send(c.client.get(), payload.data(), payload.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(payload.size()))
        << std::strerror(errno);
    // Wait for the bytes to arrive (one segment on loopback), then confirm all did.
    pollfd ready{c.server.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&ready, 1, kEventTimeoutMs), 1) << std::strerror(errno);
    int unread = 0;
    ASSERT_EQ(::ioctl(c.server.get(), FIONREAD, &unread), 0) << std::strerror(errno);
    ASSERT_EQ(unread, static_cast<int>(payload.size()));

    DiagFilter filter;
    filter.ipv6 = false;
    filter.local_port = c.listener_port;
    filter.remote_port = c.client_port;
    const std::vector<DiagSocket> sockets = dump(filter);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].inode, inode_of(c.server.get()));
    EXPECT_EQ(sockets[0].receive_queue, payload.size());
}

// Without IPv6 (disabled, or no ::1) the IPv6 tests skip, except in CI, where
// a skipped test would hide a whole family from coverage.
#define SKIP_WITHOUT_IPV6(err)                                                                               \
    do {                                                                                                     \
        if ((err) == EAFNOSUPPORT || (err) == EADDRNOTAVAIL) {                                               \
            const std::string reason =                                                                       \
                std::string("cannot bind an IPv6 loopback address (IPv6 disabled?): ") + std::strerror(err); \
            if (in_ci()) FAIL() << reason << "; CI must run the IPv6 tests";                                 \
            GTEST_SKIP() << reason;                                                                          \
        }                                                                                                    \
    } while (false)

TEST(SockDiag, Ipv6Loopback) {
    Connection c;
    const int err = make_listener(AF_INET6, c);
    SKIP_WITHOUT_IPV6(err);
    ASSERT_EQ(err, 0) << std::strerror(err);
    ASSERT_NO_FATAL_FAILURE(connect_client(AF_INET6, c));
    ASSERT_NO_FATAL_FAILURE(accept_server(c));

    DiagFilter filter;
    filter.ipv4 = false;
    filter.local_port = c.client_port;
    filter.remote_port = c.listener_port;
    filter.find_owners = true;
    std::vector<DiagSocket> sockets = dump(filter);
    ASSERT_EQ(sockets.size(), 1u);
    const DiagSocket& s = sockets[0];
    EXPECT_EQ(s.local.family, AF_INET6);
    EXPECT_EQ(s.local.to_string(), "[::1]:" + std::to_string(c.client_port));
    EXPECT_EQ(s.remote.to_string(), "[::1]:" + std::to_string(c.listener_port));
    EXPECT_EQ(s.state, sys::TcpState::established);
    EXPECT_EQ(s.inode, inode_of(c.client.get()));
    EXPECT_TRUE(s.info.has_value());
    ASSERT_TRUE(s.owner.has_value());
    EXPECT_EQ(s.owner->fd, c.client.get());

    // The IPv4 dump does not list IPv6 sockets.
    filter.ipv4 = true;
    filter.ipv6 = false;
    EXPECT_TRUE(dump(filter).empty());
}

TEST(SockDiag, Ipv4MappedAddressOnDualStackSocket) {
    // An IPv6 listener that accepts IPv4 (IPV6_V6ONLY off), bound to the mapped
    // form of 127.0.0.1, and an IPv4 client: the accepted socket is an IPv6
    // socket with mapped addresses, and is printed as such.
    Connection c;
    c.listener = Fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    SKIP_WITHOUT_IPV6(c.listener.get() < 0 ? errno : 0);
    ASSERT_GE(c.listener.get(), 0) << std::strerror(errno);
    const int off = 0;
    ASSERT_EQ(::setsockopt(c.listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0) << std::strerror(errno);
    sockaddr_in6 mapped{};
    mapped.sin6_family = AF_INET6;
    ASSERT_EQ(::inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr), 1);
    const int bound =
        ::bind(c.listener.get(), reinterpret_cast<const sockaddr*>(&mapped), sizeof(mapped)) == 0 ? 0 : errno;
    SKIP_WITHOUT_IPV6(bound);
    ASSERT_EQ(bound, 0) << std::strerror(bound);
    ASSERT_EQ(::listen(c.listener.get(), kBacklog), 0) << std::strerror(errno);
    c.listener_port = local_port(c.listener.get());
    ASSERT_NO_FATAL_FAILURE(connect_client(AF_INET, c));
    ASSERT_NO_FATAL_FAILURE(accept_server(c));

    DiagFilter filter;
    filter.ipv4 = false;
    filter.local_port = c.listener_port;
    filter.remote_port = c.client_port;
    std::vector<DiagSocket> sockets = dump(filter);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].local.family, AF_INET6);
    EXPECT_EQ(sockets[0].inode, inode_of(c.server.get()));
    EXPECT_EQ(sockets[0].local.to_string(), "[::ffff:127.0.0.1]:" + std::to_string(c.listener_port));
    EXPECT_EQ(sockets[0].remote.to_string(), "[::ffff:127.0.0.1]:" + std::to_string(c.client_port));

    // The client is a plain IPv4 socket and shows up in the IPv4 dump only.
    DiagFilter client = client_filter(c);
    sockets = dump(client);
    ASSERT_EQ(sockets.size(), 1u);
    EXPECT_EQ(sockets[0].local.family, AF_INET);
    EXPECT_EQ(sockets[0].inode, inode_of(c.client.get()));
}

TEST(SockDiag, ReadOwnerKeepaliveErrorsNamePidAndFd) {
    // pid_max is at most 2^22, so INT_MAX names no process.
    Result<sys::EffectiveKeepalive> no_process = read_owner_keepalive({INT_MAX, 3, ""});
    ASSERT_FALSE(no_process.ok());
    EXPECT_EQ(no_process.error().sys_errno, ESRCH);
    EXPECT_NE(no_process.error().message.find("pid " + std::to_string(INT_MAX)), std::string::npos)
        << no_process.error().message;

    // A descriptor number far above anything this test opens.
    constexpr int kUnusedFd = 100000;
    Result<sys::EffectiveKeepalive> no_fd = read_owner_keepalive({::getpid(), kUnusedFd, ""});
    ASSERT_FALSE(no_fd.ok());
    EXPECT_EQ(no_fd.error().sys_errno, EBADF);
    EXPECT_NE(no_fd.error().message.find("fd " + std::to_string(kUnusedFd)), std::string::npos)
        << no_fd.error().message;
    EXPECT_NE(no_fd.error().message.find(std::strerror(EBADF)), std::string::npos) << no_fd.error().message;

    // A descriptor that is not a socket: getsockopt fails, and the error still
    // names where the descriptor came from.
    Fd file(::open("/proc/self/comm", O_RDONLY | O_CLOEXEC));
    ASSERT_GE(file.get(), 0) << std::strerror(errno);
    Result<sys::EffectiveKeepalive> not_socket = read_owner_keepalive({::getpid(), file.get(), ""});
    ASSERT_FALSE(not_socket.ok());
    EXPECT_EQ(not_socket.error().sys_errno, ENOTSOCK);
    EXPECT_NE(not_socket.error().message.find("fd " + std::to_string(file.get())), std::string::npos)
        << not_socket.error().message;
}

}  // namespace
}  // namespace lifeline::net
