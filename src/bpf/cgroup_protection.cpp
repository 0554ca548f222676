// The user-space half of `protect --cgroup`: loads cgroup_keepalive.bpf.c
// through its bpftool skeleton, attaches it, and finds it again by name to
// update, detach or read it. See cgroup_protection.hpp.
#include "bpf/cgroup_protection.hpp"

#if LIFELINE_WITH_BPF

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "cgroup_keepalive.skel.h"
#include "net/pidfd.hpp"

namespace lifeline::bpf {

namespace {

using net::OwnedFd;

// The kernel truncates object names to 15 characters; these fit.
constexpr char kProgramName[] = "lifeline_cgroup";
constexpr char kPolicyMap[] = "ll_policy";
constexpr char kTouchedMap[] = "ll_touched";
constexpr const char* kOptionNames[] = {"SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT",
                                        "TCP_USER_TIMEOUT"};

// Twins of struct ll_policy and struct ll_touched in cgroup_keepalive.bpf.c.
struct PolicyValue {
    std::uint32_t generation = 0;
    std::uint32_t idle_s = 0;
    std::uint32_t interval_s = 0;
    std::uint32_t count = 0;
    std::uint32_t keepalive = 0;
    std::uint32_t user_timeout_ms = 0;
};
struct TouchedValue {
    std::uint32_t generation = 0;
    std::uint32_t failed = 0;
    std::uint64_t established_ns = 0;
};
static_assert(sizeof(PolicyValue) == 24 && sizeof(TouchedValue) == 16, "must match cgroup_keepalive.bpf.c");

// What libbpf said while loading, for the error message instead of stderr.
thread_local std::string g_libbpf_log;

int capture_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
    if (level == LIBBPF_DEBUG) return 0;
    char line[512];
    const int n = std::vsnprintf(line, sizeof(line), format, args);
    g_libbpf_log += line;
    return n;
}

// A bpf() failure, with what the errno means here.
Error bpf_error(const std::string& what, int err) {
    if (err == EPERM || err == EACCES)
        return system_error(what + " (needs CAP_BPF and CAP_NET_ADMIN: run as root)", err);
    if (err == ENOSYS)
        return make_error(Errc::unsupported, what + ": this kernel has no bpf() system call (CONFIG_BPF_SYSCALL)", err);
    return system_error(what, err);
}

std::string cgroup2_mount_hint() {
    std::ifstream mounts("/proc/self/mounts");
    std::string device, mount_point, type;
    std::string rest;
    while (mounts >> device >> mount_point >> type && std::getline(mounts, rest)) {
        if (type == "cgroup2") return "cgroup v2 is mounted at " + mount_point;
    }
    return "no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)";
}

Result<OwnedFd> open_cgroup(const std::string& path) {
    OwnedFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) return system_error("cgroup " + path, errno).with_context("--cgroup");
    struct statfs fs {};
    if (::fstatfs(fd.get(), &fs) != 0) return system_error("statfs(" + path + ")", errno);
    if (fs.f_type != CGROUP2_SUPER_MAGIC)
        return make_error(Errc::invalid_argument,
                          "--cgroup: " + path + " is not a cgroup v2 directory; " + cgroup2_mount_hint());
    return fd;
}

struct Program {
    OwnedFd fd;
    std::uint32_t id = 0;
};

Result<bpf_prog_info> program_info(int fd) {
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return bpf_error("bpf(OBJ_GET_INFO_BY_FD)", errno);
    return info;
}

bool is_ours(const bpf_prog_info& info) {
    return info.type == BPF_PROG_TYPE_SOCK_OPS && std::strncmp(info.name, kProgramName, sizeof(info.name)) == 0;
}

// lifeline's program among those attached to the cgroup itself (not inherited).
Result<std::optional<Program>> attached_program(int cgroup_fd) {
    std::uint32_t ids[64];
    std::uint32_t count = 64;
    std::uint32_t flags = 0;
    if (bpf_prog_query(cgroup_fd, BPF_CGROUP_SOCK_OPS, 0, &flags, ids, &count) != 0)
        return bpf_error("bpf(PROG_QUERY) on the cgroup", errno);
    for (std::uint32_t i = 0; i < count; ++i) {
        OwnedFd fd(bpf_prog_get_fd_by_id(ids[i]));
        if (fd.get() < 0) continue;  // Detached meanwhile.
        Result<bpf_prog_info> info = program_info(fd.get());
        if (!info) return info.error();
        if (is_ours(*info)) return std::optional<Program>(Program{std::move(fd), ids[i]});
    }
    return std::optional<Program>();
}

// The map called `name` that program `prog_fd` uses.
Result<OwnedFd> program_map(int prog_fd, const char* name) {
    std::uint32_t map_ids[16];
    bpf_prog_info info{};
    info.nr_map_ids = 16;
    info.map_ids = reinterpret_cast<std::uintptr_t>(map_ids);
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return bpf_error("bpf(OBJ_GET_INFO_BY_FD)", errno);
    for (std::uint32_t i = 0; i < std::min<std::uint32_t>(info.nr_map_ids, 16); ++i) {
        OwnedFd fd(bpf_map_get_fd_by_id(map_ids[i]));
        if (fd.get() < 0) continue;
        bpf_map_info map{};
        std::uint32_t map_len = sizeof(map);
        if (bpf_obj_get_info_by_fd(fd.get(), &map, &map_len) != 0) continue;
        if (std::strncmp(map.name, name, sizeof(map.name)) == 0) return fd;
    }
    return make_error(Errc::not_open, std::string("lifeline's BPF program has no map ") + name +
                                          " (a program of another lifeline version?)");
}

PolicyValue to_value(const KeepalivePolicy& p, std::uint32_t generation) {
    PolicyValue v;
    v.generation = generation;
    v.keepalive = p.enabled ? 1 : 0;
    v.idle_s = static_cast<std::uint32_t>(p.idle.ns() / 1'000'000'000);
    v.interval_s = static_cast<std::uint32_t>(p.interval.ns() / 1'000'000'000);
    v.count = static_cast<std::uint32_t>(p.count);
    v.user_timeout_ms = static_cast<std::uint32_t>(p.user_timeout_value().ms());
    return v;
}

Result<PolicyValue> read_policy(int map_fd) {
    const std::uint32_t key = 0;
    PolicyValue v;
    if (bpf_map_lookup_elem(map_fd, &key, &v) != 0) return bpf_error("bpf(MAP_LOOKUP_ELEM) on the policy", errno);
    return v;
}

Result<void> write_policy(int map_fd, const PolicyValue& v) {
    const std::uint32_t key = 0;
    if (bpf_map_update_elem(map_fd, &key, &v, BPF_ANY) != 0)
        return bpf_error("bpf(MAP_UPDATE_ELEM) on the policy", errno);
    return {};
}

Result<CgroupProtection> update_attached(const std::string& cgroup, const Program& program,
                                         const KeepalivePolicy& policy) {
    Result<OwnedFd> map = program_map(program.fd.get(), kPolicyMap);
    if (!map) return map.error();
    Result<PolicyValue> current = read_policy(map->get());
    if (!current) return current.error();
    const PolicyValue next = to_value(policy, current->generation + 1);
    if (auto w = write_policy(map->get(), next); !w) return w.error();
    return CgroupProtection{cgroup, program.id, next.generation, true};
}

Result<CgroupProtection> attach_new(const std::string& cgroup, int cgroup_fd, const KeepalivePolicy& policy) {
    g_libbpf_log.clear();
    libbpf_print_fn_t previous = libbpf_set_print(capture_libbpf);
    cgroup_keepalive* skel = cgroup_keepalive::open_and_load();
    const int load_errno = errno;
    libbpf_set_print(previous);
    if (skel == nullptr) {
        Error e = bpf_error("loading the sock_ops program", load_errno);
        if (!g_libbpf_log.empty()) e.message += "; libbpf: " + g_libbpf_log;
        return e;
    }
    struct Destroy {
        cgroup_keepalive* skel;
        ~Destroy() { cgroup_keepalive::destroy(skel); }
    } destroy{skel};
    const int prog_fd = bpf_program__fd(skel->progs.lifeline_cgroup);
    if (auto w = write_policy(bpf_map__fd(skel->maps.ll_policy), to_value(policy, 1)); !w) return w.error();
    // ALLOW_MULTI: other sock_ops programs on the cgroup (Cilium's, say) stay.
    if (bpf_prog_attach(prog_fd, cgroup_fd, BPF_CGROUP_SOCK_OPS, BPF_F_ALLOW_MULTI) != 0)
        return bpf_error("attaching the sock_ops program to " + cgroup, errno);
    Result<bpf_prog_info> info = program_info(prog_fd);
    if (!info) return info.error();
    return CgroupProtection{cgroup, info->id, 1, false};
}

std::vector<std::string> refused_options(std::uint32_t failed) {
    std::vector<std::string> out;
    for (int bit = 0; bit < 5; ++bit) {
        if ((failed & (1u << bit)) != 0) out.emplace_back(kOptionNames[bit]);
    }
    return out;
}

std::uint64_t monotonic_ns() {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(t.tv_nsec);
}

void append_touched(int map_fd, std::uint32_t program_id, std::vector<TouchedSocket>& out) {
    const std::uint64_t now = monotonic_ns();
    std::uint64_t key = 0;
    std::uint64_t next = 0;
    const std::uint64_t* previous = nullptr;
    while (bpf_map_get_next_key(map_fd, previous, &next) == 0) {
        key = next;
        previous = &key;
        TouchedValue v;
        if (bpf_map_lookup_elem(map_fd, &key, &v) != 0) continue;  // Evicted meanwhile.
        const std::int64_t age = now > v.established_ns ? static_cast<std::int64_t>(now - v.established_ns) : 0;
        out.push_back(
            TouchedSocket{key, program_id, v.generation, refused_options(v.failed), Duration::nanoseconds(age)});
    }
}

}  // namespace

bool built_with_bpf() { return true; }

Result<CgroupProtection> protect_cgroup(const std::string& cgroup, const KeepalivePolicy& policy) {
    if (auto valid = policy.validate(); !valid) return valid.error();
    Result<OwnedFd> cg = open_cgroup(cgroup);
    if (!cg) return cg.error();
    Result<std::optional<Program>> attached = attached_program(cg->get());
    if (!attached) return attached.error();
    if (*attached) return update_attached(cgroup, **attached, policy);
    return attach_new(cgroup, cg->get(), policy);
}

Result<bool> unprotect_cgroup(const std::string& cgroup) {
    Result<OwnedFd> cg = open_cgroup(cgroup);
    if (!cg) return cg.error();
    Result<std::optional<Program>> attached = attached_program(cg->get());
    if (!attached) return attached.error();
    if (!*attached) return false;
    if (bpf_prog_detach2((*attached)->fd.get(), cg->get(), BPF_CGROUP_SOCK_OPS) != 0)
        return bpf_error("detaching the sock_ops program from " + cgroup, errno);
    return true;
}

Result<KeepalivePolicy> cgroup_policy(const std::string& cgroup) {
    Result<OwnedFd> cg = open_cgroup(cgroup);
    if (!cg) return cg.error();
    Result<std::optional<Program>> attached = attached_program(cg->get());
    if (!attached) return attached.error();
    if (!*attached) return make_error(Errc::not_open, "no lifeline program is attached to " + cgroup);
    Result<OwnedFd> map = program_map((*attached)->fd.get(), kPolicyMap);
    if (!map) return map.error();
    Result<PolicyValue> v = read_policy(map->get());
    if (!v) return v.error();
    KeepalivePolicy p = v->keepalive != 0 ? KeepalivePolicy{} : KeepalivePolicy::disabled();
    if (v->keepalive != 0) {
        p.idle = Duration::seconds(v->idle_s);
        p.interval = Duration::seconds(v->interval_s);
        p.count = static_cast<int>(v->count);
    }
    p.user_timeout =
        v->user_timeout_ms > 0 ? UserTimeout::fixed(Duration::milliseconds(v->user_timeout_ms)) : UserTimeout::off();
    return p;
}

Result<std::vector<TouchedSocket>> touched_sockets() {
    std::vector<TouchedSocket> out;
    std::uint32_t id = 0;
    while (bpf_prog_get_next_id(id, &id) == 0) {
        OwnedFd fd(bpf_prog_get_fd_by_id(id));
        if (fd.get() < 0) {
            if (errno == EPERM) return bpf_error("bpf(PROG_GET_FD_BY_ID)", errno);
            continue;  // Unloaded meanwhile.
        }
        Result<bpf_prog_info> info = program_info(fd.get());
        if (!info || !is_ours(*info)) continue;
        Result<OwnedFd> map = program_map(fd.get(), kTouchedMap);
        if (map) append_touched(map->get(), id, out);
    }
    if (errno == EPERM) return bpf_error("bpf(PROG_GET_NEXT_ID)", errno);
    return out;
}

}  // namespace lifeline::bpf

#else  // !LIFELINE_WITH_BPF

namespace lifeline::bpf {

namespace {
Error not_built() {
    return make_error(Errc::unsupported,
                      "this lifeline was built without BPF support: clang, bpftool or libbpf-dev was missing at "
                      "build time (scripts/install-deps.sh installs them); `protect --pid` and `run` still work");
}
}  // namespace

bool built_with_bpf() { return false; }
Result<CgroupProtection> protect_cgroup(const std::string&, const KeepalivePolicy&) { return not_built(); }
Result<bool> unprotect_cgroup(const std::string&) { return not_built(); }
Result<KeepalivePolicy> cgroup_policy(const std::string&) { return not_built(); }
Result<std::vector<TouchedSocket>> touched_sockets() { return std::vector<TouchedSocket>{}; }

}  // namespace lifeline::bpf

#endif
