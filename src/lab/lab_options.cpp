// The lab's options and the command lines of each cell's server and client.
#include <fmt/core.h>

#include <algorithm>

#include "lab/expectations.hpp"
#include "lab/lab.hpp"
#include "lab/topology.hpp"

namespace lifeline::lab {

namespace {

// Bytes per second the server streams in transfer_cut: little enough that
// its output budget lasts the whole limit, so only the kernel can end it.
constexpr const char* kTransferRate = "16K";
// In stuck_reader: fast enough to fill the client's receive buffer, the
// server's send buffer and the output budget within a few seconds. The budget
// must hold the largest burst a late push tick may queue (100 ms worth) so
// that a reading client is never mistaken for a slow one.
constexpr const char* kStuckReaderRate = "4M";
constexpr const char* kStuckReaderBudget = "1048576";

std::string keepalive_spec(Mechanism m, const LabConfig& c) {
    if (m == Mechanism::none || m == Mechanism::heartbeat || m == Mechanism::websocket) return "off";
    return fmt::format("{}:{}:{}", to_string(c.keepalive_idle), to_string(c.keepalive_interval), c.keepalive_count);
}

std::string user_timeout_spec(Mechanism m, const LabConfig& c) {
    return m == Mechanism::keepalive_user_timeout || m == Mechanism::all ? to_string(c.user_timeout) : "off";
}

bool protected_from_outside(Mechanism m) { return m == Mechanism::run || m == Mechanism::protect; }

// The policy `run` and `protect` give the server: keepalive + user timeout.
std::vector<std::string> outside_policy(const LabConfig& c) {
    const Mechanism m = side_mechanism(Mechanism::run, Side::server);
    return {"--keepalive", keepalive_spec(m, c), "--user-timeout", user_timeout_spec(m, c)};
}

}  // namespace

std::vector<std::string> run_wrapper(const LabConfig& config, const std::string& binary) {
    std::vector<std::string> a = {"run"};
    const std::vector<std::string> policy = outside_policy(config);
    a.insert(a.end(), policy.begin(), policy.end());
    a.insert(a.end(), {"--", binary});
    return a;
}

std::vector<std::string> protect_arguments(const LabConfig& config, int pid) {
    std::vector<std::string> a = {"protect", "--pid", std::to_string(pid)};
    const std::vector<std::string> policy = outside_policy(config);
    a.insert(a.end(), policy.begin(), policy.end());
    return a;
}

Result<void> LabOptions::validate() const {
    const LabConfig& c = config;
    if (faults.empty() || mechanisms.empty()) return Error{"nothing to run: no faults or no mechanisms"};
    if (faults.size() > LabNetwork::kMaxClientHosts)
        return Error{fmt::format("at most {} faults (one client host each)", LabNetwork::kMaxClientHosts)};
    if (faults.size() * mechanisms.size() > 1000) return Error{"at most 1000 cells (one port each)"};
    if (binary.empty()) return Error{"no lifeline binary to run"};
    if (c.heartbeat_timeout <= c.heartbeat_interval * 2)
        return Error{"--timeout must be more than twice --heartbeat (room for a lost PING)"};
    if (c.limit <= Duration::zero() || c.settle < Duration::zero())
        return Error{"--limit must be > 0 and --settle >= 0"};
    if (c.limit < c.heartbeat_timeout * 2 + kRebootDowntime)
        return Error{"--limit must cover the server stall (twice --timeout) and a reboot"};
    if (c.nat_timeout < Duration::milliseconds(100)) return Error{"--nat-timeout must be at least 100ms"};
    const Duration slowest = std::max({keepalive_budget(c), c.user_timeout, c.heartbeat_timeout});
    if (c.limit < slowest + kKernelTolerance)
        return Error{
            fmt::format("--limit ({}) must be at least the slowest budget ({}) + 1s, or every cell "
                        "that relies on it would be MISSED",
                        to_string(c.limit), to_string(slowest))};
    for (std::size_t i = 0; i < faults.size(); ++i) {
        if (std::find(faults.begin() + i + 1, faults.end(), faults[i]) != faults.end())
            return Error{"--faults: " + std::string(to_string(faults[i])) + " is listed twice"};
    }
    for (std::size_t i = 0; i < mechanisms.size(); ++i) {
        if (std::find(mechanisms.begin() + i + 1, mechanisms.end(), mechanisms[i]) != mechanisms.end())
            return Error{"--mechanisms: " + std::string(to_string(mechanisms[i])) + " is listed twice"};
    }
    return {};
}

std::vector<std::string> server_arguments(Fault fault, Mechanism m, const LabConfig& c, const std::string& listen) {
    std::vector<std::string> a = {"serve", "--listen", listen, "--log", "json"};
    if (protected_from_outside(m)) {
        a.insert(a.end(), {"--keepalive", "system"});
    } else {
        a.insert(a.end(), {"--keepalive", keepalive_spec(m, c), "--user-timeout", user_timeout_spec(m, c)});
    }
    if (m == Mechanism::websocket) {
        // A WebSocket server always pings; there is no grant to bound.
        a.insert(a.end(), {"--mode", "websocket", "--heartbeat", to_string(c.heartbeat_interval), "--timeout",
                           to_string(c.heartbeat_timeout), "--min-interval",
                           to_string(std::min(c.heartbeat_interval, Duration::milliseconds(100)))});
    } else if (has_heartbeats(m)) {
        // The server pings too, so a rebooted client's RST reaches it as fast as heartbeats allow.
        a.insert(a.end(),
                 {"--mode", "framed", "--heartbeat", to_string(c.heartbeat_interval), "--timeout",
                  to_string(c.heartbeat_timeout), "--max-timeout", to_string(c.heartbeat_timeout), "--min-interval",
                  to_string(std::min(c.heartbeat_interval, Duration::milliseconds(100))), "--server-pings"});
    } else {
        a.insert(a.end(), {"--mode", "raw"});
    }
    if (fault == Fault::transfer_cut) a.insert(a.end(), {"--push", kTransferRate});
    if (fault == Fault::stuck_reader)
        a.insert(a.end(), {"--push", kStuckReaderRate, "--output-budget", kStuckReaderBudget});
    return a;
}

std::vector<std::string> client_arguments(Fault fault, Mechanism cell, const LabConfig& c, const std::string& server) {
    const Mechanism m = side_mechanism(cell, Side::client);
    const std::string target = m == Mechanism::websocket ? "ws://" + server + "/lab" : server;
    std::vector<std::string> a = {"connect",        target,
                                  "--log",          "json",
                                  "--keepalive",    keepalive_spec(m, c),
                                  "--user-timeout", user_timeout_spec(m, c)};
    if (has_heartbeats(m)) {
        // In server_stall the clients are more patient than the server they
        // ping: what is tested is the server's guard against its own stall.
        const Duration timeout = fault == Fault::server_stall ? c.heartbeat_timeout * 4 : c.heartbeat_timeout;
        a.insert(a.end(), {"--mode", m == Mechanism::websocket ? "websocket" : "framed", "--heartbeat",
                           to_string(c.heartbeat_interval), "--timeout", to_string(timeout)});
    } else {
        a.insert(a.end(), {"--mode", "raw"});
    }
    if (fault == Fault::stuck_reader) a.push_back("--stop-reading-on-sigusr1");
    // nat_expiry's client sends the lab's messages, read from its stdin.
    if (fault != Fault::nat_expiry) a.push_back("--no-stdin");
    return a;
}

}  // namespace lifeline::lab
