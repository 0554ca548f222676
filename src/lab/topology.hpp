// Internal: the lab's network. A switch namespace holds bridge `br0`; the
// server host and one client host per fault are namespaces joined to it by
// veth pairs, on 198.18.0.0/24 (RFC 2544's benchmarking range: never routed).
//
//   server host  <name>-srv  eth0 198.18.0.1  ── port s0 ──┐
//   client host  <name>-c<i> eth0 198.18.0.<i+2> ─ port p<i> ┴─ br0 (<name>-sw)
//
// Faults act on the switch (a port going down, nftables bridge rules) or on
// a host (wiped and rebuilt). Everything is removed by teardown(), by the
// destructor, and, for labs whose process died, by the next lab's
// remove_stale_labs().
#pragma once

#include <string>
#include <vector>

#include "lifeline/result.hpp"

namespace lifeline::lab {

class LabNetwork {
public:
    // Namespaces are named <kPrefix><pid>-<role>, so a stale lab is one whose pid is gone.
    static constexpr const char* kPrefix = "lllab-";

    static Result<LabNetwork> create(int client_hosts);
    LabNetwork(LabNetwork&& other) noexcept;
    LabNetwork& operator=(LabNetwork&&) = delete;
    LabNetwork(const LabNetwork&) = delete;
    ~LabNetwork();

    std::string switch_ns() const { return base_ + "sw"; }
    std::string server_ns() const { return base_ + "srv"; }
    std::string client_ns(int host) const { return base_ + "c" + std::to_string(host); }
    static std::string server_address() { return "198.18.0.1"; }
    static std::string client_address(int host) { return "198.18.0." + std::to_string(host + 2); }
    const std::vector<std::string>& namespaces() const { return namespaces_; }

    Result<void> pull_cable(int host);
    Result<void> plug_cable(int host);
    // Drops, in the switch, every packet from (outbound) or to (inbound) the host.
    Result<void> blackhole(int host, bool outbound);
    // The host's processes must already be gone. Deletes its port and its
    // namespace, and builds a fresh one with the same name, MAC and address,
    // its switch port left down (plug_cable brings it back).
    Result<void> wipe_host(int host);

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
    Result<void> add_host(const std::string& ns, const std::string& port, const std::string& address, int mac_id);
    std::string ip_in_switch(const std::string& command) const;

    std::string base_;
    int client_hosts_ = 0;
    std::vector<std::string> namespaces_;
};

}  // namespace lifeline::lab
