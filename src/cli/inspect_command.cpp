// `lifeline inspect`: every TCP connection on the host (this network
// namespace) with its keepalive settings, what the kernel is probing or
// retransmitting, and how long until it gives up on the peer.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "bpf/cgroup_protection.hpp"
#include "cli/commands.hpp"
#include "net/connection_health.hpp"
#include "net/sock_diag.hpp"
#include "net/sysctl.hpp"

namespace lifeline::cli {

namespace {

using nlohmann::json;

struct InspectOptions {
    int port = 0;
    int pid = 0;
    std::string state = "established";
    bool watch = false;
    Duration refresh = Duration::seconds(1);
    int iterations = 0;  // 0: until interrupted
    bool json_output = false;
    bool read_owners = true;
};

struct Row {
    net::DiagSocket socket;
    net::KeepaliveView keepalive;
    net::HealthAssessment health;
    std::string owner_read_error;                  // Why the owner's options could not be read, if they could not.
    std::optional<bpf::TouchedSocket> set_by_bpf;  // `protect --cgroup` set its options
};

std::uint64_t cookie_of(const net::DiagSocket& s) {
    return static_cast<std::uint64_t>(s.cookie[0]) | (static_cast<std::uint64_t>(s.cookie[1]) << 32);
}

// The sockets `protect --cgroup` programs set, by cookie. Best effort: without
// root or BPF the column stays empty rather than failing the listing.
std::map<std::uint64_t, bpf::TouchedSocket> touched_by_bpf(bool root) {
    std::map<std::uint64_t, bpf::TouchedSocket> out;
    if (!root || !bpf::built_with_bpf()) return out;
    Result<std::vector<bpf::TouchedSocket>> touched = bpf::touched_sockets();
    if (!touched) return out;
    for (bpf::TouchedSocket& t : *touched) out.emplace(t.cookie, std::move(t));
    return out;
}

volatile std::sig_atomic_t g_stop = 0;

Result<std::uint32_t> states_mask(const std::string& name) {
    if (name == "all") return ~0u;
    for (int s = 1; s <= 12; ++s) {
        if (sys::to_string(static_cast<sys::TcpState>(s)) == name) return 1u << s;
    }
    return Error{"unknown --state '" + name +
                 "' (use all, established, listen, syn_sent, syn_recv, fin_wait1, fin_wait2, time_wait, "
                 "close_wait, last_ack, closing)"};
}

Result<std::vector<Row>> collect(const InspectOptions& o, const TcpKernelSettings& sysctls) {
    net::DiagFilter filter;
    if (o.port > 0) filter.any_port = static_cast<std::uint16_t>(o.port);
    Result<std::uint32_t> mask = states_mask(o.state);
    if (!mask) return mask.error();
    filter.states = *mask;
    const bool root = ::geteuid() == 0;
    filter.find_owners = o.pid > 0 || (root && o.read_owners);
    Result<std::vector<net::DiagSocket>> sockets = net::dump_tcp_sockets(filter);
    if (!sockets) return sockets.error();
    const std::map<std::uint64_t, bpf::TouchedSocket> touched = touched_by_bpf(root);
    std::vector<Row> rows;
    for (net::DiagSocket& s : *sockets) {
        if (o.pid > 0 && (!s.owner || s.owner->pid != o.pid)) continue;
        Row row;
        std::optional<sys::EffectiveKeepalive> read;
        if (s.owner && root && o.read_owners) {
            Result<sys::EffectiveKeepalive> r = net::read_owner_keepalive(*s.owner);
            if (r) {
                read = *r;
            } else {
                row.owner_read_error = r.error().message;
            }
        }
        row.keepalive = net::keepalive_view(s, read, sysctls);
        row.health = net::assess(s, row.keepalive, sysctls);
        if (auto t = touched.find(cookie_of(s)); t != touched.end()) row.set_by_bpf = t->second;
        row.socket = std::move(s);
        rows.push_back(std::move(row));
    }
    return rows;
}

std::string keepalive_cell(const net::KeepaliveView& k) {
    if (!k.values.enabled) return k.inferred ? "~off" : "off";
    return fmt::format("{}{}/{}/{}", k.inferred ? "~" : "", to_human(k.values.idle), to_human(k.values.interval),
                       k.values.count);
}

std::string user_timeout_cell(const net::KeepaliveView& k) {
    if (k.inferred) return "?";
    return k.values.user_timeout > Duration::zero() ? to_human(k.values.user_timeout) : "off";
}

std::string time_left_cell(const net::HealthAssessment& h) {
    if (h.time_left.is_infinite()) return "never";
    return (h.time_left_estimated ? "~" : "") + to_human(h.time_left);
}

json to_json(const Row& r) {
    const net::DiagSocket& s = r.socket;
    const sys::TcpInfo info = s.info.value_or(sys::TcpInfo{});
    json j{
        {"local", s.local.to_string()},
        {"remote", s.remote.to_string()},
        {"state", std::string(sys::to_string(s.state))},
        {"keepalive",
         {{"enabled", r.keepalive.values.enabled},
          {"idle_s", r.keepalive.values.idle.ns() / 1'000'000'000},
          {"interval_s", r.keepalive.values.interval.ns() / 1'000'000'000},
          {"count", r.keepalive.values.count},
          {"inferred", r.keepalive.inferred}}},
        {"user_timeout_ms", r.keepalive.inferred ? json(nullptr) : json(r.keepalive.values.user_timeout.ms())},
        {"timer", std::string(net::to_string(s.timer))},
        {"timer_expires_ms", s.timer_expires.ms()},
        {"unacked", info.unacked},
        {"send_queue", s.send_queue},
        {"probes", std::max<int>(s.timer == net::SocketTimer::keepalive ? s.timer_retransmits : 0, info.probes)},
        {"retransmits",
         std::max<int>(s.timer == net::SocketTimer::retransmit ? s.timer_retransmits : 0, info.retransmits)},
        {"last_data_received_ms", info.last_data_received.ms()},
        {"rtt_ms", info.rtt.ms_f()},
        {"verdict", std::string(net::to_string(r.health.verdict))},
        {"gives_up_in_ms", r.health.time_left.is_infinite() ? json(nullptr) : json(r.health.time_left.ms())},
        {"gives_up_in_estimated", r.health.time_left_estimated},
    };
    if (s.owner) j["owner"] = {{"pid", s.owner->pid}, {"fd", s.owner->fd}, {"command", s.owner->command}};
    if (!r.owner_read_error.empty()) j["owner_read_error"] = r.owner_read_error;
    if (r.set_by_bpf) {
        j["bpf"] = {{"program_id", r.set_by_bpf->program_id},
                    {"generation", r.set_by_bpf->generation},
                    {"refused", r.set_by_bpf->refused},
                    {"established_ago_ms", r.set_by_bpf->age.ms()}};
    }
    return j;
}

void print_table(const std::vector<Row>& rows) {
    fmt::print("{:<22} {:<22} {:<11} {:<16} {:>7} {:>7} {:>6} {:>7} {:>9} {:<14} {:>10}  {}\n", "LOCAL", "REMOTE",
               "STATE", "KEEPALIVE", "USER-TO", "UNACKED", "PROBES", "RETRANS", "LAST-RECV", "VERDICT", "GIVES-UP",
               "PROCESS");
    for (const Row& r : rows) {
        const net::DiagSocket& s = r.socket;
        const sys::TcpInfo info = s.info.value_or(sys::TcpInfo{});
        const int probes = std::max<int>(s.timer == net::SocketTimer::keepalive ? s.timer_retransmits : 0, info.probes);
        const int retrans =
            std::max<int>(s.timer == net::SocketTimer::retransmit ? s.timer_retransmits : 0, info.retransmits);
        std::string owner = s.owner ? fmt::format("{}/{} fd {}", s.owner->pid, s.owner->command, s.owner->fd) : "-";
        if (r.set_by_bpf) owner += fmt::format(" [protect --cgroup, policy {}]", r.set_by_bpf->generation);
        fmt::print("{:<22} {:<22} {:<11} {:<16} {:>7} {:>7} {:>6} {:>7} {:>9} {:<14} {:>10}  {}\n", s.local.to_string(),
                   s.remote.to_string(), sys::to_string(s.state), keepalive_cell(r.keepalive),
                   user_timeout_cell(r.keepalive), info.unacked, probes, retrans, to_human(info.last_data_received),
                   net::to_string(r.health.verdict), time_left_cell(r.health), owner);
    }
    bool any_inferred = false;
    for (const Row& r : rows) any_inferred |= r.keepalive.inferred;
    if (any_inferred) {
        fmt::print(
            "\n~ marks values inferred from the armed timer and the sysctl defaults: the socket's own\n"
            "settings need root (pidfd_getfd). '?' = unknown. GIVES-UP is when the kernel ends the\n"
            "connection if nothing changes.\n");
    }
    if (rows.empty()) fmt::print("(no matching connections)\n");
}

int run_inspect(const InspectOptions& o) {
    Result<TcpKernelSettings> sysctls = net::read_tcp_kernel_settings();
    if (!sysctls) {
        fmt::print(stderr, "lifeline inspect: {}\n", sysctls.error().message);
        return 1;
    }
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    for (int i = 0; !g_stop; ++i) {
        Result<std::vector<Row>> rows = collect(o, *sysctls);
        if (!rows) {
            fmt::print(stderr, "lifeline inspect: {}\n", rows.error().message);
            return 1;
        }
        if (o.json_output) {
            json out{{"connections", json::array()}};
            for (const Row& r : *rows) out["connections"].push_back(to_json(r));
            // One object per line, so --watch --json is JSON Lines.
            fmt::print("{}\n", o.watch ? out.dump() : out.dump(2));
        } else {
            if (o.watch) fmt::print("\x1b[H\x1b[2J");
            print_table(*rows);
        }
        std::fflush(stdout);
        if (!o.watch || (o.iterations > 0 && i + 1 >= o.iterations)) break;
        // Sleeping is the point of --watch: refresh at a human pace.
        std::this_thread::sleep_for(std::chrono::nanoseconds(o.refresh.ns()));
    }
    return 0;
}

}  // namespace

void add_inspect_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<InspectOptions>();
    CLI::App* sub = app.add_subcommand(
        "inspect",
        "List TCP connections of this network namespace (via netlink sock_diag) with their keepalive\n"
        "settings, user timeout, unacknowledged data, unanswered probes and retransmissions, and a\n"
        "verdict: healthy, probing (keepalive probes unanswered), retransmitting (data unacknowledged),\n"
        "zero-window (peer not reading) or unprotected (no keepalive, no user timeout: a dead idle peer\n"
        "would never be noticed), with the time left until the kernel gives up. As root, each socket's\n"
        "own settings are read from its process (pidfd_getfd); otherwise they are inferred (marked ~).\n"
        "Sockets whose options `lifeline protect --cgroup` set are marked with its policy generation.");
    sub->add_option("--port", opts->port, "Only connections with this local or remote port")
        ->check(CLI::Range(1, 65535));
    sub->add_option("--pid", opts->pid, "Only sockets owned by this process")->check(CLI::PositiveNumber);
    sub->add_option("--state", opts->state, "TCP state to list, or all")->capture_default_str();
    sub->add_flag("--watch", opts->watch, "Refresh like top until Ctrl-C");
    add_duration_option(*sub, "--refresh", opts->refresh, "Refresh period for --watch");
    sub->add_option("--iterations", opts->iterations, "With --watch: stop after this many refreshes (0 = never)")
        ->check(CLI::NonNegativeNumber);
    sub->add_flag("--json", opts->json_output, "Print JSON (JSON Lines with --watch)");
    sub->add_flag("!--no-owner-read", opts->read_owners,
                  "Do not read each socket's own options from its process (pidfd_getfd)");
    sub->callback([opts, &run] {
        if (opts->refresh <= Duration::zero()) throw CLI::ValidationError("--refresh", "must be > 0");
        run = [opts] { return run_inspect(*opts); };
    });
}

}  // namespace lifeline::cli
