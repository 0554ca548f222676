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

std::string switch_port(Host host) { return (host.server ? "s" : "p") + std::to_string(host.index); }

// The last part of the host's address: .1 and .254 for the servers, .2 up for clients.
int host_number(Host host) {
    if (host.server) return host.index == 0 ? 1 : 254;
    return host.index + 2;
}

// Locally administered, stable per host: a rebuilt host keeps its MAC, so the
// other side's ARP (or neighbour) entry stays valid and only TCP state is
// lost, as in a reboot.
std::string mac_for(Host host) { return fmt::format("02:6c:6c:00:00:{:02x}", host_number(host) & 0xff); }

}  // namespace

Result<LabNetwork> LabNetwork::create(int client_hosts, bool ipv6) {
    if (client_hosts < 0 || client_hosts > kMaxClientHosts)
        return Error{fmt::format("a lab has at most {} client hosts", kMaxClientHosts)};
    LabNetwork net;
    net.base_ = std::string(kPrefix) + std::to_string(::getpid()) + "-";
    net.ipv6_ = ipv6;
    auto build = [&]() -> Result<void> {
        if (auto r = net.add_namespace(net.switch_ns()); !r) return r;
        // No multicast snooping: IPv6 neighbour discovery must reach a rebuilt
        // host at once, before the bridge has heard it join a group again.
        if (auto r = in_ns(net.switch_ns(), {"link", "add", "br0", "type", "bridge", "mcast_snooping", "0"}); !r)
            return r;
        if (auto r = in_ns(net.switch_ns(), {"link", "set", "br0", "up"}); !r) return r;
        if (auto r = in_ns(net.switch_ns(), {"link", "set", "lo", "up"}); !r) return r;
        for (int i = 0; i < kServerHosts; ++i) {
            if (auto r = net.add_host(Host::server_host(i)); !r) return r;
        }
        for (int i = 0; i < client_hosts; ++i) {
            if (auto r = net.add_host(Host::client_host(i)); !r) return r;
        }
        // One bridge table for the blackhole and NAT faults; rules are added later.
        if (auto r = net.nft("add table bridge lab; add chain bridge lab forward "
                             "{ type filter hook forward priority 0; policy accept; }");
            !r)
            return r.error().with_context("nftables in the switch (is nftables installed?)");
        return {};
    };
    if (Result<void> r = build(); !r) {
        net.teardown();
        return r.error().with_context("building the lab network");
    }
    return net;
}

LabNetwork::LabNetwork(LabNetwork&& other) noexcept
    : base_(std::move(other.base_)), ipv6_(other.ipv6_), namespaces_(std::exchange(other.namespaces_, {})) {}

LabNetwork::~LabNetwork() { teardown(); }

std::string LabNetwork::ns(Host host) const {
    if (host.server) return base_ + (host.index == 0 ? "srv" : "srv" + std::to_string(host.index));
    return base_ + "c" + std::to_string(host.index);
}

std::string LabNetwork::address(Host host) const {
    return ipv6_ ? fmt::format("2001:2::{:x}", host_number(host)) : fmt::format("198.18.0.{}", host_number(host));
}

std::string LabNetwork::endpoint(Host host, int port) const {
    return ipv6_ ? fmt::format("[{}]:{}", address(host), port) : fmt::format("{}:{}", address(host), port);
}

Result<void> LabNetwork::nft(const std::string& commands) const {
    Result<std::string> r = run_command({"nft", commands}, switch_ns());
    if (!r) return r.error();
    return {};
}

Result<void> LabNetwork::add_namespace(const std::string& name) {
    // Recorded first: a namespace whose `ip netns add` was cut short may exist all the same.
    namespaces_.push_back(name);
    return ip({"netns", "add", name});
}

Result<void> LabNetwork::add_host(Host host) {
    const std::string sw = switch_ns();
    const std::string name = ns(host);
    const std::string port = switch_port(host);
    if (auto r = add_namespace(name); !r) return r;
    if (auto r = in_ns(sw, {"link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name}); !r) return r;
    if (auto r = in_ns(sw, {"link", "set", port, "master", "br0"}); !r) return r;
    if (auto r = in_ns(sw, {"link", "set", port, "up"}); !r) return r;
    if (auto r = in_ns(name, {"link", "set", "lo", "up"}); !r) return r;
    if (auto r = in_ns(name, {"link", "set", "eth0", "address", mac_for(host)}); !r) return r;
    // nodad: an IPv6 address is usable at once, not after a second of duplicate detection.
    std::vector<std::string> add = {"addr", "add", address(host) + (ipv6_ ? "/64" : "/24"), "dev", "eth0"};
    if (ipv6_) add.push_back("nodad");
    if (auto r = in_ns(name, add); !r) return r;
    return in_ns(name, {"link", "set", "eth0", "up"});
}

Result<void> LabNetwork::pull_cable(Host host) {
    return in_ns(switch_ns(), {"link", "set", switch_port(host), "down"});
}

Result<void> LabNetwork::plug_cable(Host host) { return in_ns(switch_ns(), {"link", "set", switch_port(host), "up"}); }

Result<void> LabNetwork::blackhole(Host host, bool outbound) {
    // TCP only: ARP is not IP, and over IPv6 neighbour discovery must still
    // work, or the sender's kernel would report the host unreachable instead.
    const std::string family = ipv6_ ? "ip6" : "ip";
    return nft(fmt::format("add rule bridge lab forward {} {} {} meta l4proto tcp drop", family,
                           outbound ? "saddr" : "daddr", address(host)));
}

Result<void> LabNetwork::add_nat(Host host, Duration timeout) {
    if (timeout < Duration::milliseconds(100)) return Error{"the NAT timeout must be at least 100ms"};
    const std::string f = ipv6_ ? "ip6" : "ip";
    const std::string a = address(host);
    const std::string set = "nat" + std::to_string(host.index);
    // The flow key from the host's side: its address, its port, the server's port.
    const std::string out_key = fmt::format("{} saddr . tcp sport . tcp dport", f);
    const std::string in_key = fmt::format("{} daddr . tcp dport . tcp sport", f);
    const std::string rules = fmt::format(
        "add set bridge lab {set} {{ type {type} . inet_service . inet_service; flags dynamic,timeout; "
        "timeout {ms}ms; }}; "
        "add rule bridge lab forward {f} saddr {a} tcp flags & (syn|ack) == syn update @{set} {{ {out} }}; "
        "add rule bridge lab forward {f} saddr {a} {out} @{set} update @{set} {{ {out} }} accept; "
        "add rule bridge lab forward {f} daddr {a} {in} @{set} update @{set} {{ {in} }} accept; "
        "add rule bridge lab forward {f} saddr {a} meta l4proto tcp drop; "
        "add rule bridge lab forward {f} daddr {a} meta l4proto tcp drop",
        fmt::arg("set", set), fmt::arg("type", ipv6_ ? "ipv6_addr" : "ipv4_addr"), fmt::arg("ms", timeout.ms()),
        fmt::arg("f", f), fmt::arg("a", a), fmt::arg("out", out_key), fmt::arg("in", in_key));
    return nft(rules);
}

Result<void> LabNetwork::wipe_host(Host host) {
    const std::string name = ns(host);
    // Deleting one end of a veth pair deletes both at once, so the port name is
    // free again even though namespace cleanup itself is asynchronous.
    if (auto r = in_ns(switch_ns(), {"link", "del", switch_port(host)}); !r) return r;
    if (auto r = ip({"netns", "del", name}); !r) return r;
    std::erase(namespaces_, name);
    if (auto r = add_host(host); !r) return r;
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
