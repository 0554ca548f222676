// `lifeline lab`: the network lab (src/lab) from the command line.
#include <fmt/core.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "lab/lab.hpp"
#include "lab/report.hpp"
#include "lab/topology.hpp"
#include "lifeline/keepalive.hpp"

namespace lifeline::cli {

namespace {

struct LabCommandOptions {
    lab::LabConfig config;
    std::vector<std::string> faults;
    std::vector<std::string> mechanisms;
    std::string keepalive = "1s:1s:3";
    Duration user_timeout;  // Zero: the keepalive budget, as the runtime's "auto".
    std::string report;
    std::string logs;
    std::string color = "auto";
    bool json = false;
    bool capture = true;
};

// Without root, the lab can still run inside a user namespace that maps us to
// root, with its own network and mount namespaces (what `unshare -Urnm` does),
// entered in-process while the command is still single-threaded. Returns an
// error naming what the kernel refused.
Result<void> enter_user_namespace() {
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) != 0)
        return system_error("unshare(user, net, mount namespaces)", errno);
    auto write_file = [](const std::string& path, const std::string& text) -> Result<void> {
        std::ofstream f(path);
        f << text;
        f.close();
        if (!f) return Error{"cannot write " + path};
        return {};
    };
    if (auto r = write_file("/proc/self/setgroups", "deny"); !r) return r;
    if (auto r = write_file("/proc/self/uid_map", fmt::format("0 {} 1", uid)); !r) return r;
    if (auto r = write_file("/proc/self/gid_map", fmt::format("0 {} 1", gid)); !r) return r;
    // Our mounts stay ours; a private /run lets `ip netns` keep its bind mounts.
    if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        return system_error("making mounts private", errno);
    if (::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") != 0) return system_error("mounting a private /run", errno);
    return {};
}

Result<void> parse_selection(LabCommandOptions& o, lab::LabOptions& lab) {
    if (!o.faults.empty()) {
        lab.faults.clear();
        for (const auto& name : o.faults) {
            auto f = lab::parse_fault(name);
            if (!f) return Error{"--faults: unknown fault '" + name + "'"};
            lab.faults.push_back(*f);
        }
    }
    if (!o.mechanisms.empty()) {
        lab.mechanisms.clear();
        for (const auto& name : o.mechanisms) {
            auto m = lab::parse_mechanism(name);
            if (!m) return Error{"--mechanisms: unknown mechanism '" + name + "'"};
            lab.mechanisms.push_back(*m);
        }
    }
    Result<KeepalivePolicy> k = KeepalivePolicy::parse(o.keepalive, "off");
    if (!k) return k.error();
    if (!k->enabled) return Error{"--keepalive: the lab needs keepalive settings to measure (IDLE:INTERVAL:COUNT)"};
    o.config.keepalive_idle = k->idle;
    o.config.keepalive_interval = k->interval;
    o.config.keepalive_count = k->count;
    o.config.user_timeout = o.user_timeout > Duration::zero() ? o.user_timeout : k->budget();
    return {};
}

std::vector<std::string> lab_namespaces_of_this_process() {
    std::vector<std::string> mine;
    const std::string prefix = std::string(lab::LabNetwork::kPrefix) + std::to_string(::getpid()) + "-";
    for (const std::string& name : lab::LabNetwork::lab_namespaces()) {
        if (name.rfind(prefix, 0) == 0) mine.push_back(name);
    }
    return mine;
}

bool use_color(const std::string& mode) {
    if (mode == "always") return true;
    if (mode == "never") return false;
    return ::isatty(STDOUT_FILENO) != 0 && std::getenv("NO_COLOR") == nullptr;
}

int run_lab_command(LabCommandOptions& o) {
    if (::geteuid() != 0) {
        fmt::print(stderr,
                   "lifeline lab: not root; running inside an unprivileged user namespace (like `unshare -Urnm`).\n"
                   "  Works there: namespaces, veth, bridge, nftables and packet capture, all private to the lab.\n");
        if (auto r = enter_user_namespace(); !r) {
            fmt::print(stderr,
                       "lifeline lab: {}.\n  The kernel does not allow unprivileged user namespaces here "
                       "(see sysctls user.max_user_namespaces,\n  kernel.unprivileged_userns_clone, "
                       "kernel.apparmor_restrict_unprivileged_userns). Run as root instead.\n",
                       r.error().message);
            return 1;
        }
    }

    lab::LabOptions lab;
    lab.config = o.config;
    if (auto r = parse_selection(o, lab); !r) {
        fmt::print(stderr, "lifeline lab: {}\n", r.error().message);
        return 2;
    }
    lab.config = o.config;
    lab.binary = std::filesystem::read_symlink("/proc/self/exe").string();
    lab.capture = o.capture;
    lab.progress = [](const std::string& line) { fmt::print(stderr, "lab: {}\n", line); };
    if (auto v = lab.validate(); !v) {
        fmt::print(stderr, "lifeline lab: {}\n", v.error().message);
        return 2;
    }

    // Children's stderr, kept for post-mortems: in the report directory when there is one.
    std::error_code ec;
    lab.log_directory =
        !o.logs.empty() ? o.logs
        : !o.report.empty()
            ? o.report + "/logs"
            : (std::filesystem::temp_directory_path() / ("lifeline-lab-" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(lab.log_directory, ec);
    if (ec) {
        fmt::print(stderr, "lifeline lab: cannot create {}: {}\n", lab.log_directory, ec.message());
        return 1;
    }

    // SIGINT/SIGTERM/SIGHUP wake the lab's poll loop, which tears everything
    // down. Default dispositions first: a shell may have started us with
    // SIGINT ignored, and an ignored signal never reaches a signalfd.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        ::signal(sig, SIG_DFL);
        sigaddset(&stop_signals, sig);
    }
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    const int stop_fd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (stop_fd < 0) {
        fmt::print(stderr, "lifeline lab: signalfd: {}\n", std::strerror(errno));
        return 1;
    }
    lab.stop_fd = stop_fd;

    Result<lab::LabRun> run = lab::run_lab(lab);
    ::close(stop_fd);
    if (!run) {
        const bool interrupted = run.error().sys_errno == EINTR;
        const std::size_t left = lab_namespaces_of_this_process().size();
        fmt::print(stderr, "lifeline lab: {}{}\n", run.error().message,
                   left == 0 ? "; the lab's namespaces are removed"
                             : fmt::format("; {} of its namespaces are left (`ip netns list`)", left));
        return interrupted ? 130 : 1;
    }
    if (o.json) {
        fmt::print("{}\n", lab::to_json(*run).dump(2));
    } else {
        fmt::print("{}\n", lab::render_table(*run, use_color(o.color)));
        const std::string wire = lab::render_wire_summary(*run);
        if (!wire.empty()) fmt::print("\nOn the wire (captured on the switch):\n{}", wire);
    }
    std::fflush(stdout);  // Before the stderr lines below, when both go to one file.
    if (!o.report.empty()) {
        if (auto w = lab::write_report(*run, o.report); !w) {
            fmt::print(stderr, "lifeline lab: {}\n", w.error().message);
            return 1;
        }
        fmt::print(stderr, "lab: report written to {}/lab.html and {}/lab.json\n", o.report, o.report);
    }
    fmt::print(stderr, "lab: children's stderr is in {}\n", lab.log_directory);
    const bool all_expected =
        std::all_of(run->cells.begin(), run->cells.end(), [](const lab::CellResult& c) { return c.as_expected; });
    return all_expected ? 0 : 3;
}

std::string names_of_faults() {
    std::string s;
    for (lab::Fault f : lab::kAllFaults) s += fmt::format("  {:<14} {}\n", lab::to_string(f), lab::describe(f));
    return s;
}

}  // namespace

void add_lab_command(CLI::App& app, Action& run) {
    auto o = std::make_shared<LabCommandOptions>();
    CLI::App* sub = app.add_subcommand(
        "lab",
        "Build a small network of Linux network namespaces (a bridge as the switch, a server host,\n"
        "one client host per fault), run the real `lifeline serve` and `lifeline connect` in it, inject\n"
        "the faults production sees, and measure how long each mechanism takes to notice, against\n"
        "the budget it promised, and how much application data was lost on the way. Prints a fault x\n"
        "mechanism table; --report DIR also writes lab.json and a self-contained lab.html with a\n"
        "timeline per cell.\n\nFaults:\n" +
            names_of_faults() +
            "\nMechanisms: none (default sockets), keepalive (SO_KEEPALIVE idle/interval/count),\n"
            "keepalive+user_timeout (plus TCP_USER_TIMEOUT), heartbeat (framed protocol only), all;\n"
            "run and protect: a server that sets no socket option itself (serve --keepalive system, for\n"
            "a program nobody rewrote) given keepalive+user_timeout from outside, by `lifeline run` at\n"
            "start or by `lifeline protect --pid` once connected; their clients have nothing.\n\n"
            "Needs root (or unprivileged user namespaces). Everything it creates is removed at the end,\n"
            "on Ctrl-C, and (for a lab that crashed) at the next start.\n"
            "Exit status: 0 every cell as expected, 3 some cell not, 1 error, 2 usage, 130 interrupted.");
    sub->add_option("--faults", o->faults, "Faults to inject (default: all)")->delimiter(',');
    sub->add_option("--mechanisms", o->mechanisms, "Mechanisms to run each fault against (default: all)")
        ->delimiter(',');
    sub->add_option("--keepalive", o->keepalive, "Kernel keepalive IDLE:INTERVAL:COUNT")->capture_default_str();
    add_duration_option(*sub, "--user-timeout", o->user_timeout,
                        "TCP_USER_TIMEOUT where the mechanism uses it (default: the keepalive budget)");
    add_duration_option(*sub, "--heartbeat", o->config.heartbeat_interval, "Heartbeat interval");
    add_duration_option(*sub, "--timeout", o->config.heartbeat_timeout, "Heartbeat timeout");
    add_duration_option(*sub, "--limit", o->config.limit, "How long to watch after the faults");
    add_duration_option(*sub, "--settle", o->config.settle, "Healthy traffic before the faults");
    add_duration_option(*sub, "--nat-timeout", o->config.nat_timeout,
                        "nat_expiry: the NAT forgets a flow idle this long (keep heartbeats and keepalive shorter)");
    sub->add_flag("--ipv6", o->config.ipv6, "Run the lab over IPv6 (2001:2::/64) instead of IPv4 (198.18.0.0/24)");
    sub->add_option("--report", o->report, "Write lab.json and lab.html (and the children's logs) here");
    sub->add_option("--logs", o->logs, "Directory for the children's stderr (default: report/logs or /tmp)");
    sub->add_flag("--json", o->json, "Print the results as JSON instead of the table");
    sub->add_flag("!--no-capture", o->capture, "Do not capture packets (no wire evidence)");
    sub->add_option("--color", o->color, "Color the verdicts: auto, always, never")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "always", "never"}));
    sub->callback([o, &run] { run = [o] { return run_lab_command(*o); }; });
}

}  // namespace lifeline::cli
