// `lifeline protect --pid PID`: give a running program's TCP connections a
// keepalive policy from outside, through pidfd_getfd (src/net/pidfd.hpp).
// `lifeline protect --cgroup PATH`: the same for every connection established
// in a cgroup, through a BPF sock_ops program (src/bpf/cgroup_protection.hpp).
// This file is options and printing only.
#include <fmt/core.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bpf/cgroup_protection.hpp"
#include "cli/commands.hpp"
#include "cli/policy_options.hpp"
#include "cli/stop_signals.hpp"
#include "net/pidfd.hpp"

namespace lifeline::cli {

namespace {

struct ProtectOptions {
    int pid = 0;
    std::string cgroup;
    bool detach = false;
    bool watch = false;
    Duration interval = Duration::seconds(1);
    bool dry_run = false;
    PolicyOptions policy;
};

// Listeners too: the kernel copies a listener's keepalive options and user
// timeout into every connection it accepts later, so those start protected.
constexpr std::uint32_t kStates = (1u << static_cast<int>(sys::TcpState::established)) |
                                  (1u << static_cast<int>(sys::TcpState::close_wait)) |
                                  (1u << static_cast<int>(sys::TcpState::listen));

std::string keepalive_cell(const sys::EffectiveKeepalive& k) {
    if (!k.enabled) return "off";
    return fmt::format("on {}/{}/{}", to_human(k.idle), to_human(k.interval), k.count);
}

std::string user_timeout_cell(const sys::EffectiveKeepalive& k) {
    return k.user_timeout > Duration::zero() ? to_human(k.user_timeout) : "off";
}

void print_header(bool dry_run) {
    fmt::print("{:>4} {:<24} {:<24} {:<11} {:<18} {:>8}   {:<18} {:>8}\n", "FD", "LOCAL", "PEER", "STATE",
               "KEEPALIVE-BEFORE", "USER-TO", dry_run ? "KEEPALIVE-WOULD-BE" : "KEEPALIVE-AFTER", "USER-TO");
}

void print_row(const net::ProcessSocket& p, const net::SocketProtection& r) {
    fmt::print("{:>4} {:<24} {:<24} {:<11} {:<18} {:>8}   {:<18} {:>8}\n", p.fd, p.socket.local.to_string(),
               p.socket.remote.to_string(), sys::to_string(p.socket.state), keepalive_cell(r.before),
               user_timeout_cell(r.before), keepalive_cell(r.after), user_timeout_cell(r.after));
}

// One pass: protects the sockets not in `done`. Returns how many failed; a
// failure to list the sockets at all is an Error.
Result<int> protect_new(const ProtectOptions& o, const net::PidFd& process, const KeepalivePolicy& policy,
                        std::set<std::uint64_t>& done, bool& header_printed) {
    Result<std::vector<net::ProcessSocket>> sockets = net::process_tcp_sockets(o.pid, kStates);
    if (!sockets) return sockets.error();
    int failures = 0;
    for (const net::ProcessSocket& p : *sockets) {
        if (done.count(p.socket.inode) > 0) continue;
        Result<net::SocketProtection> r = net::protect_socket(process, p.fd, policy, o.dry_run);
        if (!r) {
            // The descriptor was closed between the listing and the duplicate: nothing to protect.
            if (r.error().sys_errno == EBADF) continue;
            fmt::print(stderr, "lifeline protect: {}\n", r.error().message);
            ++failures;
            // Without the privilege every other socket fails the same way.
            if (r.error().sys_errno == EPERM) return failures;
            continue;
        }
        if (!header_printed) print_header(o.dry_run);
        header_printed = true;
        print_row(p, *r);
        done.insert(p.socket.inode);
    }
    std::fflush(stdout);
    return failures;
}

// --watch: until SIGINT/SIGTERM or the target exits, a pass every interval.
int watch(const ProtectOptions& o, const net::PidFd& process, const KeepalivePolicy& policy) {
    StopSignals signals;
    std::mutex mutex;
    std::condition_variable wake;
    bool stop = false;
    signals.on_signal([&] {
        const std::lock_guard lock(mutex);
        stop = true;
        wake.notify_all();
    });
    std::set<std::uint64_t> done;
    bool header_printed = false;
    int failures = 0;
    while (true) {
        if (process.exited()) {
            fmt::print(stderr, "lifeline protect: pid {} exited\n", o.pid);
            break;
        }
        Result<int> pass = protect_new(o, process, policy, done, header_printed);
        if (!pass) {
            // The process may have exited between the check and the listing.
            if (process.exited()) continue;
            fmt::print(stderr, "lifeline protect: {}\n", pass.error().message);
            return 1;
        }
        failures += *pass;
        std::unique_lock lock(mutex);
        // Waiting is the point of --watch: new sockets are looked for at this pace.
        if (wake.wait_for(lock, std::chrono::nanoseconds(o.interval.ns()), [&] { return stop; })) break;
    }
    signals.finish();
    return failures == 0 ? 0 : 1;
}

int detach_cgroup(const ProtectOptions& o) {
    Result<bool> detached = bpf::unprotect_cgroup(o.cgroup);
    if (!detached) {
        fmt::print(stderr, "lifeline protect: {}\n", detached.error().message);
        return 1;
    }
    if (!*detached) {
        fmt::print(stderr, "lifeline protect: no lifeline program is attached to {}: nothing to detach\n", o.cgroup);
        return 1;
    }
    fmt::print(
        "cgroup {}: detached; connections established from now on keep the kernel's defaults "
        "(open ones keep what they got)\n",
        o.cgroup);
    return 0;
}

int protect_cgroup(const ProtectOptions& o, const KeepalivePolicy& policy) {
    if (o.dry_run) {
        Result<KeepalivePolicy> current = bpf::cgroup_policy(o.cgroup);
        if (!current && current.error().code != Errc::not_open) {
            fmt::print(stderr, "lifeline protect: {}\n", current.error().message);
            return 1;
        }
        fmt::print("cgroup {}: now {}; would be keepalive {}\n", o.cgroup,
                   current ? "keepalive " + current->to_string() : "unprotected", policy.to_string());
        return 0;
    }
    Result<bpf::CgroupProtection> done = bpf::protect_cgroup(o.cgroup, policy);
    if (!done) {
        fmt::print(stderr, "lifeline protect: {}\n", done.error().message);
        return 1;
    }
    fmt::print("cgroup {}: {} BPF sock_ops program id {} (policy generation {}): keepalive {}\n", o.cgroup,
               done->updated ? "updated the policy of" : "attached", done->program_id, done->generation,
               policy.to_string());
    fmt::print(
        "  every TCP connection established in the cgroup from now on gets it (connections already open\n"
        "  keep theirs: protect them with --pid). The attachment stays after this command; remove it with\n"
        "  lifeline protect --cgroup {} --detach\n",
        o.cgroup);
    return 0;
}

int run_protect(const ProtectOptions& o, const CLI::App& sub) {
    if (!o.cgroup.empty() && o.detach) return detach_cgroup(o);
    std::vector<std::string> explanation;
    Result<KeepalivePolicy> policy = resolve_policy(o.policy, sub, explanation);
    if (!policy) {
        fmt::print(stderr, "lifeline protect: {}\n", policy.error().message);
        return 2;
    }
    if (auto valid = policy->validate(); !valid) {
        fmt::print(stderr, "lifeline protect: {}\n", valid.error().message);
        return 2;
    }
    if (!o.cgroup.empty()) {
        for (const std::string& line : explanation) fmt::print(stderr, "  {}\n", line);
        return protect_cgroup(o, *policy);
    }
    Result<net::PidFd> process = net::PidFd::open(o.pid);
    if (!process) {
        fmt::print(stderr, "lifeline protect: {}\n", process.error().message);
        return 1;
    }
    fmt::print(stderr, "lifeline protect: pid {}: {}keepalive {}\n", o.pid, o.dry_run ? "dry run, would apply " : "",
               policy->to_string());
    for (const std::string& line : explanation) fmt::print(stderr, "  {}\n", line);
    if (o.watch) return watch(o, *process, *policy);
    std::set<std::uint64_t> done;
    bool header_printed = false;
    Result<int> pass = protect_new(o, *process, *policy, done, header_printed);
    if (!pass) {
        fmt::print(stderr, "lifeline protect: {}\n", pass.error().message);
        return 1;
    }
    if (!header_printed && *pass == 0) fmt::print("(pid {} holds no TCP connections or listeners)\n", o.pid);
    return *pass == 0 ? 0 : 1;
}

}  // namespace

void add_protect_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<ProtectOptions>();
    CLI::App* sub = app.add_subcommand(
        "protect",
        "Apply a keepalive policy to a running program's TCP connections and listeners, without\n"
        "restarting or changing it (static binaries too): each socket is duplicated out of the\n"
        "process with pidfd_getfd (Linux 5.6+), set on the duplicate (options belong to the socket),\n"
        "read back and closed. Prints the values before and after per socket. Connections accepted\n"
        "later inherit a protected listener's options; --watch also catches new sockets the program\n"
        "connects. Needs ptrace rights over the target (root or CAP_SYS_PTRACE, subject to\n"
        "kernel.yama.ptrace_scope), and runs in the target's network namespace (nsenter -t PID -n).\n"
        "With --cgroup PATH instead: attaches a BPF sock_ops program to that cgroup v2 so every TCP\n"
        "connection established there from then on, connected or accepted, by any program started in\n"
        "it at any time, gets the policy (bpf_setsockopt; needs root). Running it again replaces the\n"
        "policy live; --detach removes it. `lifeline inspect` marks the sockets it touched.");
    CLI::Option* pid = sub->add_option("--pid", opts->pid, "The process to protect")->check(CLI::PositiveNumber);
    CLI::Option* cgroup =
        sub->add_option("--cgroup", opts->cgroup, "The cgroup v2 directory to protect (e.g. /sys/fs/cgroup/app)");
    pid->excludes(cgroup);
    sub->add_flag("--detach", opts->detach, "With --cgroup: remove lifeline's program from the cgroup")->needs(cgroup);
    CLI::Option* watch_flag =
        sub->add_flag("--watch", opts->watch, "Keep protecting new sockets until SIGINT/SIGTERM or the process exits")
            ->needs(pid);
    add_duration_option(*sub, "--interval", opts->interval, "With --watch: how often to look for new sockets")
        ->needs(watch_flag);
    sub->add_flag("--dry-run", opts->dry_run, "Show what would change; set nothing");
    add_policy_options(*sub, opts->policy);
    sub->callback([opts, &run, sub] {
        if (opts->pid == 0 && opts->cgroup.empty()) throw CLI::RequiredError("--pid or --cgroup");
        if (opts->interval <= Duration::zero()) throw CLI::ValidationError("--interval", "must be > 0");
        run = [opts, sub] { return run_protect(*opts, *sub); };
    });
}

}  // namespace lifeline::cli
