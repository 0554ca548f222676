// TCP sockets of this network namespace through NETLINK_SOCK_DIAG (inet_diag),
// the interface `ss` uses, plus the owner lookup through /proc and pidfd_getfd.
// See sock_diag.hpp for the contract; man 7 sock_diag for the wire format.
#include "net/sock_diag.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "net/endpoint.hpp"
// glibc's struct tcp_info, the one sys::from_kernel() takes. <linux/tcp.h> would
// define a second, conflicting struct tcp_info, so it is not included.
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>

namespace lifeline::net {

namespace {

// A broken or wedged kernel reply must not hang `lifeline inspect` forever.
// A dump of even a very busy host answers in milliseconds.
constexpr Duration kReceiveTimeout = Duration::seconds(5);

// netlink_dump() sizes each batch to the reader's last recvmsg() buffer, capped
// at 32 KiB, so a 32 KiB buffer is never truncated (MSG_TRUNC) and needs the
// fewest round trips.
constexpr std::size_t kReceiveBufferBytes = 32 * 1024;

// Each DiagSocket is a few hundred bytes; a million of them is already far more
// than anyone reads. Past that the caller should narrow the filter instead of
// having the process grow without bound.
constexpr std::size_t kMaxSockets = std::size_t{1} << 20;

// The kernel's struct tcp_info grew over the years. Before the fields
// sys::from_kernel() relies on most (up to tcpi_total_retrans, the Linux 2.6 layout)
// the payload is not a tcp_info worth reading.
constexpr std::size_t kMinTcpInfoBytes = offsetof(struct tcp_info, tcpi_total_retrans) + sizeof(std::uint32_t);

// Closes a file descriptor on every path. close() errors are ignored on
// purpose: these descriptors are only read from (netlink replies, /proc, a
// duplicated socket), so nothing can be lost, and on Linux the descriptor is
// released even when close() reports an error.
class UniqueFd {
public:
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

struct MnlSocketCloser {
    // Same reasoning as UniqueFd: a failed close of a netlink socket loses nothing.
    void operator()(mnl_socket* socket) const { mnl_socket_close(socket); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlSocketCloser>;

struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};
using Dir = std::unique_ptr<DIR, DirCloser>;

const char* family_name(int family) { return family == AF_INET6 ? "AF_INET6" : "AF_INET"; }

bool matches_ports(const DiagFilter& filter, std::uint16_t local, std::uint16_t remote) {
    if (filter.local_port && *filter.local_port != local) return false;
    if (filter.remote_port && *filter.remote_port != remote) return false;
    if (filter.any_port && *filter.any_port != local && *filter.any_port != remote) return false;
    return true;
}

SocketAddress address_from_kernel(int family, const __be32 (&addr)[4], __be16 port) {
    SocketAddress out;
    out.family = family;
    // idiag_src/idiag_dst are in network byte order already; IPv4 uses the first word.
    std::memcpy(out.addr, addr, family == AF_INET6 ? 16 : 4);
    out.port = ntohs(port);
    return out;
}

// inet_diag_msg.idiag_timer. The kernel sends 0..4 for TCP; a value a future
// kernel might add is reported as no timer rather than as a wrong one.
SocketTimer timer_from_kernel(std::uint8_t timer) {
    if (timer > static_cast<std::uint8_t>(SocketTimer::zero_window_probe)) return SocketTimer::none;
    return static_cast<SocketTimer>(timer);
}

// State shared by the libmnl callbacks of one dump (one address family).
struct DumpContext {
    int family = AF_INET;
    const DiagFilter* filter = nullptr;
    std::vector<DiagSocket>* sockets = nullptr;
    std::optional<Error> error;  // Set by a callback that returns MNL_CB_ERROR.

    std::string what() const { return std::string("sock_diag dump of ") + family_name(family) + " TCP sockets"; }
    int fail(std::string message, int sys_errno) {
        error = Error{what() + ": " + std::move(message), sys_errno};
        return MNL_CB_ERROR;
    }
};

using AttributeTable = const nlattr * [INET_DIAG_MAX + 1];

int on_attribute(const nlattr* attr, void* data) {
    auto& table = *static_cast<AttributeTable*>(data);
    const std::uint16_t type = mnl_attr_get_type(attr);
    // Attributes newer than these headers are skipped, not an error.
    if (type <= INET_DIAG_MAX) table[type] = attr;
    return MNL_CB_OK;
}

int on_diag_message(const nlmsghdr* nlh, void* data) {
    auto& ctx = *static_cast<DumpContext*>(data);
    if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY)
        return ctx.fail("unexpected netlink message type " + std::to_string(nlh->nlmsg_type), EPROTO);
    const std::size_t payload_bytes = mnl_nlmsg_get_payload_len(nlh);
    if (payload_bytes < sizeof(inet_diag_msg))
        return ctx.fail("reply of " + std::to_string(payload_bytes) + " bytes is shorter than struct inet_diag_msg (" +
                            std::to_string(sizeof(inet_diag_msg)) + " bytes)",
                        EBADMSG);
    // Copied rather than cast, so the code never depends on the buffer's alignment.
    inet_diag_msg msg;
    std::memcpy(&msg, mnl_nlmsg_get_payload(nlh), sizeof(msg));

    const int family = msg.idiag_family;
    if (family != AF_INET && family != AF_INET6)
        return ctx.fail("reply for address family " + std::to_string(family), EPROTO);
    const std::uint16_t local_port = ntohs(msg.id.idiag_sport);
    const std::uint16_t remote_port = ntohs(msg.id.idiag_dport);
    // Ports are filtered here rather than with an INET_DIAG_REQ_BYTECODE program:
    // the kernel walks every socket either way, reading the extra messages costs
    // little at the scale `lifeline inspect` runs on, and three comparisons are
    // obviously correct where a hand-assembled bytecode program is not.
    if (!matches_ports(*ctx.filter, local_port, remote_port)) return MNL_CB_OK;

    if (ctx.sockets->size() >= kMaxSockets)
        return ctx.fail("more than " + std::to_string(kMaxSockets) + " sockets match; narrow the filter", 0);

    DiagSocket diag;
    diag.local = address_from_kernel(family, msg.id.idiag_src, msg.id.idiag_sport);
    diag.remote = address_from_kernel(family, msg.id.idiag_dst, msg.id.idiag_dport);
    diag.state = static_cast<sys::TcpState>(msg.idiag_state);
    diag.timer = timer_from_kernel(msg.idiag_timer);
    // idiag_expires is milliseconds from now (jiffies_delta_to_msecs), never negative.
    diag.timer_expires = diag.timer == SocketTimer::none ? Duration::zero() : Duration::milliseconds(msg.idiag_expires);
    diag.timer_retransmits = msg.idiag_retrans;
    diag.receive_queue = msg.idiag_rqueue;
    diag.send_queue = msg.idiag_wqueue;
    diag.uid = msg.idiag_uid;
    diag.inode = msg.idiag_inode;
    diag.cookie[0] = msg.id.idiag_cookie[0];
    diag.cookie[1] = msg.id.idiag_cookie[1];
    diag.interface = msg.id.idiag_if;

    AttributeTable attributes = {};
    if (mnl_attr_parse(nlh, sizeof(inet_diag_msg), on_attribute, &attributes) != MNL_CB_OK)
        return ctx.fail("malformed attributes", EBADMSG);
    // TIME_WAIT and request (SYN_RECV) sockets come without INET_DIAG_INFO.
    if (const nlattr* attr = attributes[INET_DIAG_INFO]) {
        const std::size_t info_bytes = mnl_attr_get_payload_len(attr);
        if (info_bytes >= kMinTcpInfoBytes) {
            // The kernel sends its own struct tcp_info, which may be shorter
            // (older kernel) or longer (newer kernel) than this libc's; fields
            // it did not send stay zero.
            struct tcp_info kernel_info {};
            std::memcpy(&kernel_info, mnl_attr_get_payload(attr), std::min(info_bytes, sizeof(kernel_info)));
            diag.info = sys::from_kernel(kernel_info);
        }
    }
    ctx.sockets->push_back(std::move(diag));
    return MNL_CB_OK;
}

int on_noop(const nlmsghdr*, void*) { return MNL_CB_OK; }

int on_error(const nlmsghdr* nlh, void* data) {
    auto& ctx = *static_cast<DumpContext*>(data);
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nlmsgerr)) return ctx.fail("truncated NLMSG_ERROR", EBADMSG);
    nlmsgerr err;
    std::memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
    if (err.error == 0) return MNL_CB_STOP;  // An acknowledgement; a dump does not ask for one.
    const int errnum = -err.error;
    ctx.error = system_error(ctx.what() + ": the kernel answered NLMSG_ERROR", errnum);
    return MNL_CB_ERROR;
}

// NLMSG_DONE of a dump carries the dump's final status as an int (negative errno).
int on_done(const nlmsghdr* nlh, void* data) {
    auto& ctx = *static_cast<DumpContext*>(data);
    if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
        int status = 0;
        std::memcpy(&status, mnl_nlmsg_get_payload(nlh), sizeof(status));
        if (status < 0) {
            ctx.error = system_error(ctx.what() + ": the dump ended with an error", -status);
            return MNL_CB_ERROR;
        }
    }
    return MNL_CB_STOP;
}

int on_overrun(const nlmsghdr*, void* data) {
    return static_cast<DumpContext*>(data)->fail("NLMSG_OVERRUN: the kernel dropped data", ENOBUFS);
}

// Turns a failed mnl_cb_run2() that no callback explained into an Error.
Error run_error(const DumpContext& ctx, int errnum) {
    switch (errnum) {
        case EINTR:
            return Error{ctx.what() +
                             ": the socket table changed during the dump "
                             "(NLM_F_DUMP_INTR); try again",
                         errnum};
        case ESRCH:
            return Error{ctx.what() + ": reply addressed to another netlink port", errnum};
        case EPROTO:
            return Error{ctx.what() + ": reply with an unexpected sequence number", errnum};
        default:
            return system_error(ctx.what() + ": parsing the reply", errnum);
    }
}

Result<void> dump_family(mnl_socket* nl, int family, std::uint32_t seq, const DiagFilter& filter,
                         std::vector<char>& buffer, std::vector<DiagSocket>& sockets) {
    DumpContext ctx;
    ctx.family = family;
    ctx.filter = &filter;
    ctx.sockets = &sockets;

    nlmsghdr* nlh = mnl_nlmsg_put_header(buffer.data());
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    auto* request = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    request->sdiag_family = static_cast<std::uint8_t>(family);
    request->sdiag_protocol = IPPROTO_TCP;
    request->idiag_states = filter.states;
    // Extension bits are numbered from 1: bit (N - 1) asks for attribute N.
    request->idiag_ext = static_cast<std::uint8_t>(1u << (INET_DIAG_INFO - 1));

    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return system_error(ctx.what() + ": sendto(NETLINK_SOCK_DIAG)", errno);

    mnl_cb_t control_callbacks[NLMSG_MIN_TYPE] = {};
    control_callbacks[NLMSG_NOOP] = on_noop;
    control_callbacks[NLMSG_ERROR] = on_error;
    control_callbacks[NLMSG_DONE] = on_done;
    control_callbacks[NLMSG_OVERRUN] = on_overrun;
    const unsigned int portid = mnl_socket_get_portid(nl);

    // Each turn reads one batch of replies; the kernel ends the dump with
    // NLMSG_DONE (MNL_CB_STOP), and the receive timeout bounds every wait.
    for (;;) {
        const ssize_t received = mnl_socket_recvfrom(nl, buffer.data(), buffer.size());
        if (received < 0) {
            const int errnum = errno;
            if (errnum == EINTR) continue;
            if (errnum == EAGAIN || errnum == EWOULDBLOCK)
                return Error{ctx.what() + ": no reply from the kernel within " + lifeline::to_string(kReceiveTimeout),
                             errnum};
            if (errnum == ENOSPC)  // libmnl's translation of MSG_TRUNC.
                return Error{ctx.what() + ": a reply did not fit in " + std::to_string(buffer.size()) + " bytes",
                             errnum};
            return system_error(ctx.what() + ": recvfrom(NETLINK_SOCK_DIAG)", errnum);
        }
        if (received == 0) return Error{ctx.what() + ": empty read before NLMSG_DONE", EPROTO};
        const int run = mnl_cb_run2(buffer.data(), static_cast<std::size_t>(received), seq, portid, on_diag_message,
                                    &ctx, control_callbacks, NLMSG_MIN_TYPE);
        if (run == MNL_CB_ERROR) {
            if (ctx.error) return *std::move(ctx.error);
            return run_error(ctx, errno);
        }
        if (run == MNL_CB_STOP) return {};
    }
}

bool all_digits(const char* text) {
    if (*text == '\0') return false;
    for (; *text != '\0'; ++text)
        if (*text < '0' || *text > '9') return false;
    return true;
}

template <class Int>
std::optional<Int> parse_number(std::string_view text) {
    Int value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// The inode of "socket:[12345]", the link target of a socket's /proc/PID/fd entry.
std::optional<std::uint64_t> socket_inode(std::string_view link) {
    constexpr std::string_view prefix = "socket:[";
    if (link.size() <= prefix.size() + 1 || link.substr(0, prefix.size()) != prefix || link.back() != ']')
        return std::nullopt;
    return parse_number<std::uint64_t>(link.substr(prefix.size(), link.size() - prefix.size() - 1));
}

// /proc/PID/comm without its newline, or nullopt if the process is gone.
std::optional<std::string> read_comm(int proc_fd, const std::string& pid) {
    const int raw = ::openat(proc_fd, (pid + "/comm").c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) return std::nullopt;
    UniqueFd fd(raw);
    char text[64];  // TASK_COMM_LEN is 16.
    const ssize_t n = ::read(fd.get(), text, sizeof(text));
    if (n < 0) return std::nullopt;
    std::string comm(text, static_cast<std::size_t>(n));
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    return comm;
}

// Fills DiagSocket::owner by scanning /proc/[0-9]*/fd/* for "socket:[INODE]".
// Processes that exit or deny access mid-scan are skipped: that is the normal
// life of /proc. A socket shared by several descriptors (dup, fork) reports
// the first one found, lowest pid and then lowest fd first, as /proc lists them.
Result<void> find_owners(std::vector<DiagSocket>& sockets) {
    std::unordered_map<std::uint64_t, std::size_t> wanted;  // inode -> index in `sockets`
    for (std::size_t i = 0; i < sockets.size(); ++i)
        // TIME_WAIT and request sockets have inode 0: no file, so no owner.
        if (sockets[i].inode != 0) wanted.emplace(sockets[i].inode, i);
    if (wanted.empty()) return {};

    Dir proc(::opendir("/proc"));
    if (!proc) return system_error("opendir(/proc)", errno);
    const int proc_fd = ::dirfd(proc.get());
    std::size_t remaining = wanted.size();

    while (remaining > 0) {
        errno = 0;
        const dirent* entry = ::readdir(proc.get());
        if (entry == nullptr) {
            if (errno != 0) return system_error("readdir(/proc)", errno);
            break;
        }
        if (!all_digits(entry->d_name)) continue;
        const std::string pid_text = entry->d_name;
        const std::optional<int> pid = parse_number<int>(pid_text);
        if (!pid) continue;

        const int raw = ::openat(proc_fd, (pid_text + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (raw < 0) continue;  // Exited, or not ours to look at (EACCES).
        Dir fds(::fdopendir(raw));
        if (!fds) {
            ::close(raw);  // fdopendir() leaves the descriptor open when it fails.
            continue;
        }
        std::optional<std::string> comm;  // Read once per process, only on a match.
        while (remaining > 0) {
            errno = 0;
            const dirent* fd_entry = ::readdir(fds.get());
            if (fd_entry == nullptr) break;  // End, or the process exited meanwhile.
            if (!all_digits(fd_entry->d_name)) continue;
            char link[64];  // "socket:[4294967295]" is 19 bytes.
            const ssize_t n = ::readlinkat(::dirfd(fds.get()), fd_entry->d_name, link, sizeof(link));
            if (n <= 0 || static_cast<std::size_t>(n) >= sizeof(link)) continue;
            const std::optional<std::uint64_t> inode =
                socket_inode(std::string_view(link, static_cast<std::size_t>(n)));
            if (!inode) continue;
            const auto found = wanted.find(*inode);
            if (found == wanted.end() || sockets[found->second].owner) continue;
            const std::optional<int> fd = parse_number<int>(fd_entry->d_name);
            if (!fd) continue;
            if (!comm) comm = read_comm(proc_fd, pid_text);
            if (!comm) break;  // The process exited under us; its descriptors went with it.
            sockets[found->second].owner = SocketOwner{*pid, *fd, *comm};
            --remaining;
        }
    }
    return {};
}

Error pidfd_error(const char* call, const std::string& where, int errnum) {
    Error error = system_error(std::string(call) + "(" + where + ")", errnum);
    if (errnum == ENOSYS)
        error.message += " (the kernel is older than 5.6, which added pidfd_getfd)";
    else if (errnum == EPERM)
        error.message += " (duplicating another process's socket needs root or CAP_SYS_PTRACE over it)";
    return error;
}

}  // namespace

std::string_view to_string(SocketTimer timer) {
    switch (timer) {
        case SocketTimer::none:
            return "none";
        case SocketTimer::retransmit:
            return "retransmit";
        case SocketTimer::keepalive:
            return "keepalive";
        case SocketTimer::time_wait:
            return "time_wait";
        case SocketTimer::zero_window_probe:
            return "zero_window_probe";
    }
    return "unknown";
}

// IPv4-mapped addresses on IPv6 sockets print as they are ("[::ffff:127.0.0.1]"),
// so the output shows which socket family the connection really uses.
std::string SocketAddress::to_string() const { return format_address(family, addr, port); }

Result<std::vector<DiagSocket>> dump_tcp_sockets(const DiagFilter& filter) {
    std::vector<DiagSocket> sockets;
    if (!filter.ipv4 && !filter.ipv6) return sockets;

    MnlSocket nl(mnl_socket_open(NETLINK_SOCK_DIAG));
    if (!nl) return system_error("socket(AF_NETLINK, NETLINK_SOCK_DIAG)", errno);
    const int nl_fd = mnl_socket_get_fd(nl.get());
    const timeval timeout{static_cast<time_t>(kReceiveTimeout.ms() / 1000),
                          static_cast<suseconds_t>(kReceiveTimeout.ms() % 1000 * 1000)};
    if (::setsockopt(nl_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0)
        return system_error("setsockopt(SO_RCVTIMEO) on netlink socket " + std::to_string(nl_fd), errno);
    if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return system_error("bind(NETLINK_SOCK_DIAG)", errno);

    std::vector<char> buffer(kReceiveBufferBytes);
    // One request per family: inet_diag picks its handler by sdiag_family, so
    // AF_UNSPEC is not an option, and each dump returns only its own family.
    std::uint32_t seq = 1;
    if (filter.ipv4)
        if (auto r = dump_family(nl.get(), AF_INET, seq++, filter, buffer, sockets); !r) return r.error();
    if (filter.ipv6)
        if (auto r = dump_family(nl.get(), AF_INET6, seq++, filter, buffer, sockets); !r) return r.error();

    if (filter.find_owners)
        if (auto r = find_owners(sockets); !r) return r.error();
    return sockets;
}

Result<sys::EffectiveKeepalive> read_owner_keepalive(const SocketOwner& owner) {
    const std::string where = "pid " + std::to_string(owner.pid) + ", fd " + std::to_string(owner.fd);
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
    const long pidfd = ::syscall(SYS_pidfd_open, owner.pid, 0);
    if (pidfd < 0) return pidfd_error("pidfd_open", where, errno);
    const UniqueFd pid_fd(static_cast<int>(pidfd));

    const long duplicate = ::syscall(SYS_pidfd_getfd, pid_fd.get(), owner.fd, 0);
    if (duplicate < 0) return pidfd_error("pidfd_getfd", where, errno);
    // Closing our duplicate later does not touch the connection: the owner's
    // descriptor still holds the socket open.
    const UniqueFd socket_fd(static_cast<int>(duplicate));

    Result<sys::EffectiveKeepalive> keepalive = sys::read_keepalive(socket_fd.get());
    if (!keepalive)
        return keepalive.error().with_context(where + " (duplicated here as fd " + std::to_string(socket_fd.get()) +
                                              ")");
    return keepalive;
#else
    return Error{"pidfd_getfd(" + where + "): not available in this build's system headers", ENOSYS};
#endif
}

}  // namespace lifeline::net
