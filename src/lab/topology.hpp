// Internal: the lab's network. A switch namespace holds bridge `br0`; two
// server hosts and one client host per fault are namespaces joined to it by
// veth pairs, on 198.18.0.0/24 (RFC 2544's benchmarking range: never routed)
// or, with IPv6, on 2001:2::/64 (RFC 5180's benchmarking range).
//
//   server host   <name>-srv   eth0 .1 / ::1     ── port s0 ──┐
//   rebootable    <name>-srv1  eth0 .254 / ::fe  ── port s1 ──┤ br0 (<name>-sw)
//   client host i <name>-c<i>  eth0 .<i+2>       ── port p<i> ┘
//
// The second server host serves only the server_reboot cells, so wiping it
// disturbs no other cell. Faults act on the switch (a port going down,
// nftables bridge rules) or on a host (wiped and rebuilt). Everything is
// removed by teardown(), by the destructor, and, for labs whose process
// died, by the next lab's remove_stale_labs().
#pragma once

#include <string>
#include <vector>

#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline::lab {

// A host of the lab: a server host (0: everyone's, 1: the rebootable one) or client host i.
struct Host {
    bool server = false;
    int index = 0;
    static Host server_host(int i) { return Host{true, i}; }
    static Host client_host(int i) { return Host{false, i}; }
};

class LabNetwork {
public:
    // Namespaces are named <kPrefix><pid>-<role>, so a stale lab is one whose pid is gone.
    static constexpr const char* kPrefix = "lllab-";
    static constexpr int kServerHosts = 2;
    static constexpr int kMaxClientHosts = 200;  // Addresses .2 to .201.

    static Result<LabNetwork> create(int client_hosts, bool ipv6);
    LabNetwork(LabNetwork&& other) noexcept;
    LabNetwork& operator=(LabNetwork&&) = delete;
    LabNetwork(const LabNetwork&) = delete;
    ~LabNetwork();

    bool ipv6() const { return ipv6_; }
    std::string switch_ns() const { return base_ + "sw"; }
    std::string ns(Host host) const;
    // "198.18.0.1" or "2001:2::1".
    std::string address(Host host) const;
    // "198.18.0.1:7000" or "[2001:2::1]:7000".
    std::string endpoint(Host host, int port) const;
    const std::vector<std::string>& namespaces() const { return namespaces_; }

    Result<void> pull_cable(Host host);
    Result<void> plug_cable(Host host);
    // Drops, in the switch, every TCP packet from (outbound) or to (inbound) the host.
    Result<void> blackhole(Host host, bool outbound);
    // A NAT in the switch for the host's TCP flows: a flow exists from its SYN
    // and any packet refreshes it; once idle for `timeout` it is forgotten and
    // its packets are dropped both ways (no RST, as most home routers do).
    Result<void> add_nat(Host host, Duration timeout);
    // The host's processes must already be gone. Deletes its port and its
    // namespace, and builds a fresh one with the same name, MAC and address,
    // its switch port left down (plug_cable brings it back).
    Result<void> wipe_host(Host host);

    // Idempotent; also run by the destructor.
    void teardown();
    // This lab's namespaces that still exist (after teardown: none, or a failure to report).
    std::vector<std::string> leftovers() const;

    // Deletes namespaces of earlier labs whose process is gone; returns how many.
    static int remove_stale_labs();
    // Namespaces of any lab, live or stale (for tests of teardown).
    static std::vector<std::string> lab_namespaces();

private:
    LabNetwork() = default;
    Result<void> add_namespace(const std::string& name);
    Result<void> add_host(Host host);
    Result<void> nft(const std::string& commands) const;

    std::string base_;
    bool ipv6_ = false;
    std::vector<std::string> namespaces_;
};

}  // namespace lifeline::lab
