// pidfd_open/pidfd_getfd and the /proc walk behind `lifeline protect --pid`.
// See pidfd.hpp for the contract.
#include "net/pidfd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline::net {

namespace {

constexpr int kCapSysPtrace = 19;  // include/uapi/linux/capability.h

struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};
using Dir = std::unique_ptr<DIR, DirCloser>;

std::string where(int pid) { return "pid " + std::to_string(pid); }

// EPERM/EACCES from anything that needs ptrace rights over the target.
Error permission_error(const std::string& what, int errnum) {
    Error error = system_error(what, errnum);
    if (errnum == EPERM || errnum == EACCES) error.message += ": " + ptrace_permission_hint();
    return error;
}

std::optional<std::uint64_t> socket_inode(std::string_view link) {
    constexpr std::string_view prefix = "socket:[";
    if (link.size() <= prefix.size() + 1 || link.substr(0, prefix.size()) != prefix || link.back() != ']')
        return std::nullopt;
    const std::string_view digits = link.substr(prefix.size(), link.size() - prefix.size() - 1);
    std::uint64_t inode = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), inode);
    if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
    return inode;
}

// inode -> lowest descriptor of `pid` holding that socket.
Result<std::map<std::uint64_t, int>> socket_fds(int pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/fd";
    Dir dir(::opendir(path.c_str()));
    if (!dir) return permission_error("opendir(" + path + ")", errno);
    std::map<std::uint64_t, int> out;
    while (const dirent* entry = ::readdir(dir.get())) {
        int fd = -1;
        const std::string_view name = entry->d_name;
        const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (ec != std::errc{} || end != name.data() + name.size()) continue;  // "." and ".."
        char link[64];                                                        // "socket:[4294967295]" is 19 bytes.
        const ssize_t n = ::readlinkat(::dirfd(dir.get()), entry->d_name, link, sizeof(link));
        if (n <= 0 || static_cast<std::size_t>(n) >= sizeof(link)) continue;  // Closed meanwhile, or not a socket.
        const auto inode = socket_inode(std::string_view(link, static_cast<std::size_t>(n)));
        if (!inode) continue;
        auto [it, inserted] = out.emplace(*inode, fd);
        if (!inserted) it->second = std::min(it->second, fd);
    }
    return out;
}

Result<ino_t> net_namespace(const std::string& pid) {
    const std::string path = "/proc/" + pid + "/ns/net";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return permission_error("stat(" + path + ")", errno);
    return st.st_ino;
}

// sock_diag answers for the namespace of its netlink socket only.
Result<void> check_same_network_namespace(int pid) {
    Result<ino_t> ours = net_namespace("self");
    if (!ours) return ours.error();
    Result<ino_t> theirs = net_namespace(std::to_string(pid));
    if (!theirs) return theirs.error();
    if (*ours == *theirs) return {};
    return make_error(Errc::unsupported, where(pid) + " is in another network namespace (net:[" +
                                             std::to_string(*theirs) + "]) than this process (net:[" +
                                             std::to_string(*ours) + "]); run inside it: nsenter -t " +
                                             std::to_string(pid) + " -n lifeline ...");
}

bool has_cap_sys_ptrace() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("CapEff:", 0) != 0) continue;
        const std::size_t start = line.find_first_not_of(" \t", 7);
        if (start == std::string::npos) return false;
        std::uint64_t caps = 0;
        std::from_chars(line.data() + start, line.data() + line.size(), caps, 16);
        return ((caps >> kCapSysPtrace) & 1u) != 0;
    }
    return false;
}

std::string yama_rule() {
    std::ifstream file("/proc/sys/kernel/yama/ptrace_scope");
    int scope = -1;
    if (!(file >> scope)) return "kernel.yama.ptrace_scope: not present (Yama off: same uid suffices)";
    const std::string head = "kernel.yama.ptrace_scope = " + std::to_string(scope);
    switch (scope) {
        case 0:
            return head + " (same uid suffices, if the target is dumpable)";
        case 1:
            return head +
                   " (without CAP_SYS_PTRACE only a parent of the target may attach: run the target as our "
                   "child, or set the sysctl to 0)";
        case 2:
            return head + " (only CAP_SYS_PTRACE may attach)";
        case 3:
            return head + " (no process may attach, not even root, until reboot)";
        default:
            return head;
    }
}

sys::EffectiveKeepalive predicted(const KeepalivePolicy& policy, const sys::EffectiveKeepalive& before) {
    sys::EffectiveKeepalive out = before;
    out.enabled = policy.enabled;
    if (policy.enabled) {
        out.idle = policy.idle;
        out.interval = policy.interval;
        out.count = policy.count;
    }
    out.user_timeout = policy.user_timeout_value();
    return out;
}

}  // namespace

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = other.fd_;
        other.fd_ = -1;
    }
    return *this;
}

// close() errors are ignored: these descriptors are duplicates or handles we
// only read through, and Linux releases the descriptor even when close fails.
OwnedFd::~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
}

std::string ptrace_permission_hint() {
    std::string hint = "duplicating another process's descriptors needs PTRACE_MODE_ATTACH over it: ";
    hint += has_cap_sys_ptrace() ? "we have CAP_SYS_PTRACE, so " + yama_rule()
                                 : "we lack CAP_SYS_PTRACE (run as root or grant it: setcap cap_sys_ptrace+ep), "
                                   "else the same uid and " +
                                       yama_rule();
    return hint;
}

Result<PidFd> PidFd::open(int pid) {
#if defined(SYS_pidfd_open)
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        Error error = system_error("pidfd_open(" + where(pid) + ")", errno);
        if (error.sys_errno == ENOSYS) error.message += " (the kernel is older than 5.3)";
        return error;
    }
    return PidFd(pid, OwnedFd(static_cast<int>(fd)));
#else
    return make_error(Errc::unsupported, "pidfd_open(" + where(pid) + "): not in this build's system headers", ENOSYS);
#endif
}

bool PidFd::exited() const {
    pollfd p{fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

Result<OwnedFd> PidFd::duplicate(int target_fd) const {
    const std::string what = "pidfd_getfd(" + where(pid_) + ", fd " + std::to_string(target_fd) + ")";
#if defined(SYS_pidfd_getfd)
    const long fd = ::syscall(SYS_pidfd_getfd, fd_.get(), target_fd, 0);
    if (fd < 0) {
        if (errno == ENOSYS) return system_error(what + " (the kernel is older than 5.6)", errno);
        return permission_error(what, errno);
    }
    return OwnedFd(static_cast<int>(fd));
#else
    return make_error(Errc::unsupported, what + ": not in this build's system headers", ENOSYS);
#endif
}

Result<std::vector<ProcessSocket>> process_tcp_sockets(int pid, std::uint32_t states) {
    if (auto same = check_same_network_namespace(pid); !same) return same.error();
    Result<std::map<std::uint64_t, int>> fds = socket_fds(pid);
    if (!fds) return fds.error();
    std::vector<ProcessSocket> out;
    if (fds->empty()) return out;
    DiagFilter filter;
    filter.states = states;
    Result<std::vector<DiagSocket>> sockets = dump_tcp_sockets(filter);
    if (!sockets) return sockets.error();
    for (DiagSocket& s : *sockets) {
        const auto found = fds->find(s.inode);
        if (s.inode == 0 || found == fds->end()) continue;
        s.owner = SocketOwner{pid, found->second, {}};
        out.push_back(ProcessSocket{found->second, std::move(s)});
    }
    std::sort(out.begin(), out.end(), [](const ProcessSocket& a, const ProcessSocket& b) { return a.fd < b.fd; });
    return out;
}

Result<SocketProtection> protect_socket(const PidFd& process, int fd, const KeepalivePolicy& policy, bool dry_run) {
    Result<OwnedFd> duplicate = process.duplicate(fd);
    if (!duplicate) return duplicate.error();
    const std::string context = where(process.pid()) + ", fd " + std::to_string(fd);
    Result<sys::EffectiveKeepalive> before = sys::read_keepalive(duplicate->get());
    if (!before) return before.error().with_context(context);
    if (dry_run) return SocketProtection{*before, predicted(policy, *before)};
    Result<sys::EffectiveKeepalive> after = sys::apply_keepalive(duplicate->get(), policy);
    if (!after) return after.error().with_context(context);
    return SocketProtection{*before, *after};
}

}  // namespace lifeline::net
