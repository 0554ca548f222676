#include "lab/topology.hpp"

#include <dirent.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "lab/process.hpp"

namespace lifeline::lab {

namespace {

Result<void> ip(std::vector<std::string> args) {
    args.insert(args.begin(), "ip");
    Result<std::string> r = run_command(args);
    if (!r) return r.error();
    return {};
}

Result<void> in_ns(const std::string& ns, std::vector<std::string> args) {
    args.insert(args.begin(), {"-n", ns});
    return ip(std::move(args));
}

std::string switch_port(int host) { return "p" + std::to_string(host); }

// Locally administered, stable per host: a rebuilt host keeps its MAC, so the
// server's ARP entry stays valid and only TCP state is lost, as in a reboot.
std::string mac_for(int mac_id) { return fmt::format("02:6c:6c:00:00:{:02x}", mac_id & 0xff); }

}  // namespace

Result<LabNetwork> LabNetwork::create(int client_hosts) {
    LabNetwork net;
    net.base_ = std::string(kPrefix) + std::to_string(::getpid()) + "-";
    net.client_hosts_ = client_hosts;
    auto build = [&]() -> Result<void> {
        if (auto r = net.add_namespace(net.switch_ns()); !r) return r;
        if (auto r = in_ns(net.switch_ns(), {"link", "add", "br0", "type", "bridge"}); !r) return r;
        if (auto r = in_ns(net.switch_ns(), {"link", "set", "br0", "up"}); !r) return r;
        if (auto r = in_ns(net.switch_ns(), {"link", "set", "lo", "up"}); !r) return r;
        if (auto r = net.add_namespace(net.server_ns()); !r) return r;
        if (auto r = net.add_host(net.server_ns(), "s0", server_address(), 1); !r) return r;
        for (int i = 0; i < client_hosts; ++i) {
            if (auto r = net.add_namespace(net.client_ns(i)); !r) return r;
            if (auto r = net.add_host(net.client_ns(i), switch_port(i), client_address(i), i + 2); !r) return r;
        }
        // One bridge table for the blackhole faults; rules are added at fault time.
        Result<std::string> nft = run_command({"nft",
                                               "add table bridge lab; add chain bridge lab forward "
                                               "{ type filter hook forward priority 0; policy accept; }"},
                                              net.switch_ns());
        if (!nft) return nft.error().with_context("nftables in the switch (is nftables installed?)");
        return {};
    };
    if (Result<void> r = build(); !r) {
        net.teardown();
        return r.error().with_context("building the lab network");
    }
    return net;
}

LabNetwork::LabNetwork(LabNetwork&& other) noexcept
    : base_(std::move(other.base_)),
      client_hosts_(other.client_hosts_),
      namespaces_(std::exchange(other.namespaces_, {})) {}

LabNetwork::~LabNetwork() { teardown(); }

Result<void> LabNetwork::add_namespace(const std::string& name) {
    // Recorded first: a namespace whose `ip netns add` was cut short may exist all the same.
    namespaces_.push_back(name);
    return ip({"netns", "add", name});
}

Result<void> LabNetwork::add_host(const std::string& ns, const std::string& port, const std::string& address,
                                  int mac_id) {
    const std::string sw = switch_ns();
    if (auto r = in_ns(sw, {"link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns}); !r) return r;
    if (auto r = in_ns(sw, {"link", "set", port, "master", "br0"}); !r) return r;
    if (auto r = in_ns(sw, {"link", "set", port, "up"}); !r) return r;
    if (auto r = in_ns(ns, {"link", "set", "lo", "up"}); !r) return r;
    if (auto r = in_ns(ns, {"link", "set", "eth0", "address", mac_for(mac_id)}); !r) return r;
    if (auto r = in_ns(ns, {"addr", "add", address + "/24", "dev", "eth0"}); !r) return r;
    return in_ns(ns, {"link", "set", "eth0", "up"});
}

Result<void> LabNetwork::pull_cable(int host) { return in_ns(switch_ns(), {"link", "set", switch_port(host), "down"}); }

Result<void> LabNetwork::plug_cable(int host) { return in_ns(switch_ns(), {"link", "set", switch_port(host), "up"}); }

Result<void> LabNetwork::blackhole(int host, bool outbound) {
    const std::string rule =
        fmt::format("add rule bridge lab forward ip {} {} drop", outbound ? "saddr" : "daddr", client_address(host));
    Result<std::string> r = run_command({"nft", rule}, switch_ns());
    if (!r) return r.error();
    return {};
}

Result<void> LabNetwork::wipe_host(int host) {
    const std::string ns = client_ns(host);
    // Deleting one end of a veth pair deletes both at once, so the port name is
    // free again even though namespace cleanup itself is asynchronous.
    if (auto r = in_ns(switch_ns(), {"link", "del", switch_port(host)}); !r) return r;
    if (auto r = ip({"netns", "del", ns}); !r) return r;
    std::erase(namespaces_, ns);
    if (auto r = add_namespace(ns); !r) return r;
    if (auto r = add_host(ns, switch_port(host), client_address(host), host + 2); !r) return r;
    return pull_cable(host);
}

void LabNetwork::teardown() {
    if (base_.empty()) return;
    // Deleting a namespace deletes the veth ends in it, and with them their peers.
    for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) (void)ip({"netns", "del", *it});
    namespaces_.clear();
    // Whatever carries our name and is still there (a command cut short): once more.
    for (const std::string& name : lab_namespaces()) {
        if (name.rfind(base_, 0) == 0) (void)ip({"netns", "del", name});
    }
}

std::vector<std::string> LabNetwork::leftovers() const {
    std::vector<std::string> left;
    for (const std::string& name : lab_namespaces()) {
        if (!base_.empty() && name.rfind(base_, 0) == 0) left.push_back(name);
    }
    return left;
}

std::vector<std::string> LabNetwork::lab_namespaces() {
    std::vector<std::string> names;
    DIR* dir = ::opendir("/run/netns");
    if (dir == nullptr) return names;
    while (const dirent* e = ::readdir(dir)) {
        const std::string name = e->d_name;
        if (name.rfind(kPrefix, 0) == 0) names.push_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
}

int LabNetwork::remove_stale_labs() {
    int removed = 0;
    for (const std::string& name : lab_namespaces()) {
        const int pid = std::atoi(name.c_str() + std::char_traits<char>::length(kPrefix));
        // Our own pid counts as stale: this lab has built nothing yet, so a
        // namespace with our pid is a crashed lab's that had the same pid.
        if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) == 0) continue;
        if (ip({"netns", "del", name})) ++removed;
    }
    return removed;
}

}  // namespace lifeline::lab
