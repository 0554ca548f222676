// A host-wide view of TCP sockets through netlink NETLINK_SOCK_DIAG /
// inet_diag (the interface `ss` uses), with the timer each socket has armed.
//
// sock_diag does not report a socket's own keepalive idle/interval/count or its
// TCP_USER_TIMEOUT. As root, read_owner_keepalive() duplicates the socket out of
// its owning process with pidfd_getfd (Linux 5.6+) and reads them with
// getsockopt; without that, callers infer what they can from the armed timer
// and must say which values are inferred.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lifeline/result.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "lifeline/sys/tcp_info.hpp"
#include "lifeline/time.hpp"

namespace lifeline::net {

// The timer a socket has armed (inet_diag_msg.idiag_timer).
enum class SocketTimer : std::uint8_t {
    none = 0,
    retransmit = 1,  // data (or a SYN/FIN) unacknowledged
    keepalive = 2,   // also the idle timer of a socket with SO_KEEPALIVE; sometimes the
                     // FIN_WAIT2 timer of an orphaned socket (the kernel shares sk_timer)
    time_wait = 3,
    zero_window_probe = 4,
};
std::string_view to_string(SocketTimer timer);

struct SocketAddress {
    int family = AF_INET;           // AF_INET or AF_INET6
    std::uint8_t addr[16] = {};     // network byte order; the first 4 bytes for IPv4
    std::uint16_t port = 0;         // host byte order
    std::string to_string() const;  // "127.0.0.1:8888", "[::1]:8888"
};

struct SocketOwner {
    int pid = 0;
    int fd = 0;
    std::string command;  // /proc/PID/comm
};

struct DiagSocket {
    SocketAddress local;
    SocketAddress remote;
    sys::TcpState state = sys::TcpState::close;
    SocketTimer timer = SocketTimer::none;
    Duration timer_expires;  // from now; zero when no timer
    // idiag_retrans: keepalive or zero-window probes, or retransmissions, sent unanswered.
    std::uint8_t timer_retransmits = 0;
    // For a listener the kernel reuses these two: receive_queue is the number of
    // connections waiting in the accept queue and send_queue the listen() backlog.
    std::uint32_t receive_queue = 0;  // idiag_rqueue: bytes received, not yet read
    std::uint32_t send_queue = 0;     // idiag_wqueue: bytes not yet acknowledged (sent or not)
    std::uint32_t uid = 0;
    std::uint64_t inode = 0;
    // idiag_cookie (low word first) and idiag_if: with the addresses they name
    // this very socket for SOCK_DESTROY, not a later one reusing the 4-tuple.
    std::uint32_t cookie[2] = {0, 0};
    std::uint32_t interface = 0;
    std::optional<sys::TcpInfo> info;  // INET_DIAG_INFO, when the kernel sent it
    std::optional<SocketOwner> owner;  // when find_owners was asked and it could be found
};

struct DiagFilter {
    std::optional<std::uint16_t> local_port;
    std::optional<std::uint16_t> remote_port;
    std::optional<std::uint16_t> any_port;  // local or remote
    std::uint32_t states = ~0u;             // bit (1 << sys::TcpState) per wanted state
    bool ipv4 = true;
    bool ipv6 = true;
    bool find_owners = false;  // scan /proc/*/fd for the socket inodes
};

// Dumps TCP sockets (IPv4 and/or IPv6) of the current network namespace.
// Blocking; each netlink read waits at most 5 s, so a silent kernel cannot hang
// the caller. Errors: the netlink socket cannot be opened, the kernel answers
// NLMSG_ERROR or not at all within the timeout, more than 2^20 sockets match, or
// (with find_owners) /proc cannot be read at all. Processes that exit or hide
// their descriptors during the owner scan only leave `owner` empty.
// Any thread; no state is shared between calls.
Result<std::vector<DiagSocket>> dump_tcp_sockets(const DiagFilter& filter);

// As root: duplicates `owner.fd` out of `owner.pid` (pidfd_open + pidfd_getfd)
// and reads its keepalive options. Errors name the pid/fd and errno (EPERM
// without CAP_SYS_PTRACE, ENOSYS on kernels before 5.6).
Result<sys::EffectiveKeepalive> read_owner_keepalive(const SocketOwner& owner);

}  // namespace lifeline::net
