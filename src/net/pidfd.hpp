// Another process's TCP sockets, reached through pidfd (Linux 5.6+): list the
// sockets a process holds (its /proc/PID/fd links matched against sock_diag),
// duplicate one into this process with pidfd_getfd, and apply a keepalive
// policy on the duplicate. Socket options belong to the socket, not to the
// descriptor, so what is set on the duplicate is what the owner gets; closing
// the duplicate leaves the owner's connection alone. Works whatever the owner
// is linked against (static binaries too): nothing runs inside it.
//
// Privilege: pidfd_getfd and reading /proc/PID/fd need PTRACE_MODE_ATTACH over
// the target (CAP_SYS_PTRACE, or same uid within what kernel.yama.ptrace_scope
// allows). EPERM/EACCES errors say which rule applies. Threads: any; no state
// is shared between calls.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "net/sock_diag.hpp"

namespace lifeline::net {

// A descriptor of our own, closed on destruction. Move-only.
class OwnedFd {
public:
    OwnedFd() = default;
    explicit OwnedFd(int fd) : fd_(fd) {}
    OwnedFd(OwnedFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    OwnedFd& operator=(OwnedFd&& other) noexcept;
    OwnedFd(const OwnedFd&) = delete;
    OwnedFd& operator=(const OwnedFd&) = delete;
    ~OwnedFd();
    int get() const { return fd_; }

private:
    int fd_ = -1;
};

// A process handle that cannot be confused with a later process reusing the pid.
class PidFd {
public:
    // pidfd_open(pid). Errors: ESRCH (no such process), ENOSYS (kernel < 5.3).
    static Result<PidFd> open(int pid);
    int pid() const { return pid_; }
    int fd() const { return fd_.get(); }
    // True once the process has exited (the pidfd polls readable).
    bool exited() const;
    // pidfd_getfd(target_fd): a duplicate of the process's descriptor, O_CLOEXEC.
    // Errors: EPERM without ptrace rights (the message names CAP_SYS_PTRACE and
    // kernel.yama.ptrace_scope), EBADF when the process closed it meanwhile.
    Result<OwnedFd> duplicate(int target_fd) const;

private:
    PidFd(int pid, OwnedFd fd) : pid_(pid), fd_(std::move(fd)) {}
    int pid_ = 0;
    OwnedFd fd_;
};

struct ProcessSocket {
    int fd = -1;        // The owner's descriptor number.
    DiagSocket socket;  // Its sock_diag view (owner filled in).
};

// The TCP sockets `pid` holds whose state is in `states` (bit 1 << TcpState),
// lowest fd first. A socket held by several descriptors is listed once.
// sock_diag sees only this network namespace: a target in another one is an
// error saying so (run inside it: `nsenter -t PID -n`).
Result<std::vector<ProcessSocket>> process_tcp_sockets(int pid, std::uint32_t states);

struct SocketProtection {
    sys::EffectiveKeepalive before;
    sys::EffectiveKeepalive after;  // Read back; with dry_run, what the policy would set.
};

// Duplicates `fd` of the process, reads its keepalive options, applies `policy`
// unless `dry_run`, and reads them back. The duplicate is closed before returning.
Result<SocketProtection> protect_socket(const PidFd& process, int fd, const KeepalivePolicy& policy, bool dry_run);

// Why the calling process may not ptrace-attach to others, for error messages:
// the kernel.yama.ptrace_scope in force and what it allows, and whether we
// have CAP_SYS_PTRACE. Never fails (unknown parts are said to be unknown).
std::string ptrace_permission_hint();

}  // namespace lifeline::net
