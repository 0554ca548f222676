// `lifeline reap`: established connections whose peer is gone by the kernel's
// own evidence (net::death_evidence), with their owner; --kill ends them with
// SOCK_DESTROY (net::destroy_tcp_socket) so the owner gets ECONNABORTED now
// instead of after the retransmission limit. This file is options and printing.
#include <arpa/inet.h>
#include <fmt/core.h>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "net/connection_health.hpp"
#include "net/sock_destroy.hpp"
#include "net/sock_diag.hpp"

namespace lifeline::cli {

namespace {

struct ReapOptions {
    int port = 0;
    std::string peer;  // "ADDR" or "ADDR:PORT" as lifeline prints it
    int pid = 0;
    Duration dead_for = Duration::seconds(30);
    bool kill = false;
};

// The address part of "198.18.0.1:8888" / "[::1]:8888".
std::string address_part(const std::string& endpoint) {
    const std::size_t colon = endpoint.rfind(':');
    return colon == std::string::npos ? endpoint : endpoint.substr(0, colon);
}

bool peer_matches(const std::string& filter, const net::SocketAddress& remote) {
    if (filter.empty()) return true;
    const std::string text = remote.to_string();
    if (text == filter) return true;
    const std::string address = address_part(text);
    return address == filter || address == "[" + filter + "]";
}

struct Candidate {
    net::DiagSocket socket;
    net::DeathEvidence evidence;
};

Result<std::vector<Candidate>> find_dead(const ReapOptions& o) {
    net::DiagFilter filter;
    filter.states = 1u << static_cast<int>(sys::TcpState::established);
    if (o.port > 0) filter.any_port = static_cast<std::uint16_t>(o.port);
    filter.find_owners = true;
    Result<std::vector<net::DiagSocket>> sockets = net::dump_tcp_sockets(filter);
    if (!sockets) return sockets.error();
    std::vector<Candidate> out;
    for (net::DiagSocket& s : *sockets) {
        if (o.pid > 0 && (!s.owner || s.owner->pid != o.pid)) continue;
        if (!peer_matches(o.peer, s.remote)) continue;
        std::optional<net::DeathEvidence> evidence = net::death_evidence(s, o.dead_for);
        if (!evidence) continue;
        out.push_back(Candidate{std::move(s), *std::move(evidence)});
    }
    return out;
}

std::string owner_cell(const net::DiagSocket& s) {
    return s.owner ? fmt::format("{}/{} fd {}", s.owner->pid, s.owner->command, s.owner->fd) : "-";
}

int run_reap(const ReapOptions& o) {
    Result<std::vector<Candidate>> dead = find_dead(o);
    if (!dead) {
        fmt::print(stderr, "lifeline reap: {}\n", dead.error().message);
        return 1;
    }
    if (dead->empty()) {
        fmt::print("(no connection is dead by the kernel's evidence for {} or more)\n", to_human(o.dead_for));
        return 0;
    }
    fmt::print("{:<24} {:<24} {:<14} {:>8}  {:<52} {:<24} {}\n", "LOCAL", "PEER", "EVIDENCE", "NO-ACK", "DETAIL",
               "PROCESS", "ACTION");
    int failures = 0;
    for (const Candidate& c : *dead) {
        std::string action = "reported";
        if (o.kill) {
            Result<void> destroyed = net::destroy_tcp_socket(c.socket);
            if (destroyed) {
                action = "killed (owner gets ECONNABORTED)";
            } else {
                action = "not killed";
                fmt::print(stderr, "lifeline reap: {}\n", destroyed.error().message);
                ++failures;
            }
        }
        fmt::print("{:<24} {:<24} {:<14} {:>8}  {:<52} {:<24} {}\n", c.socket.local.to_string(),
                   c.socket.remote.to_string(), net::to_string(c.evidence.kind), to_human(c.evidence.silent_for),
                   c.evidence.description, owner_cell(c.socket), action);
    }
    return failures == 0 ? 0 : 1;
}

}  // namespace

void add_reap_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<ReapOptions>();
    CLI::App* sub = app.add_subcommand(
        "reap",
        "List established TCP connections (this network namespace) whose peer is gone by the\n"
        "kernel's own evidence: nothing acknowledged for --dead-for while sent data is retransmitted\n"
        "with backoff, or while keepalive probes go unanswered. Shows the owning process and the\n"
        "evidence. With --kill, ends them through sock_diag SOCK_DESTROY (CAP_NET_ADMIN, a kernel with\n"
        "CONFIG_INET_DIAG_DESTROY): the owner's next or blocked call fails with ECONNABORTED instead of\n"
        "waiting for the retransmission limit (about 15 minutes by default). Without --kill it only reports.");
    sub->add_option("--port", opts->port, "Only connections with this local or remote port")
        ->check(CLI::Range(1, 65535));
    sub->add_option("--peer", opts->peer, "Only connections to this peer: ADDRESS or ADDRESS:PORT");
    sub->add_option("--pid", opts->pid, "Only sockets owned by this process")->check(CLI::PositiveNumber);
    add_duration_option(*sub, "--dead-for", opts->dead_for, "How long nothing may have been acknowledged");
    sub->add_flag("--kill", opts->kill, "Destroy the connections found (SOCK_DESTROY)");
    sub->callback([opts, &run] {
        if (opts->dead_for <= Duration::zero()) throw CLI::ValidationError("--dead-for", "must be > 0");
        run = [opts] { return run_reap(*opts); };
    });
}

}  // namespace lifeline::cli
