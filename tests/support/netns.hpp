// Test support: small networks of Linux network namespaces that a test
// creates and always tears down (destructor, and stale ones from crashed runs
// at the next start). Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for setns).
//
// Topology of SwitchedNetwork: a switch namespace holding bridge `br0`, and N
// host namespaces, host i joined by a veth pair (`eth0` in the host, `p<i>` on
// the bridge) with address 198.18.0.<i+1>/24 (RFC 2544 benchmarking range:
// never routed anywhere). Pulling host i's cable = setting `p<i>` down: its
// packets vanish both ways, with no RST and no ICMP, while its own link stays up.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lifeline::testing {

struct CommandResult {
    int status = -1;
    std::string output;  // stdout and stderr
};

// Runs a shell command line built by the test itself (no outside input).
inline CommandResult run_command(const std::string& command) {
    CommandResult r;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) return r;
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) r.output += buf.data();
    const int status = ::pclose(pipe);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

inline void must(const std::string& command) {
    const CommandResult r = run_command(command);
    if (r.status != 0)
        throw std::runtime_error("`" + command + "` failed (" + std::to_string(r.status) + "): " + r.output);
}

// Why a netns test cannot run here, or "" when it can.
inline std::string netns_unavailable_reason() {
    if (::geteuid() != 0) return "network namespace tests need root (CAP_NET_ADMIN)";
    if (run_command("ip -V").status != 0) return "`ip` from iproute2 is not installed";
    return "";
}

inline bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

// In a test body: skips with the reason, except in CI where a skip is a failure.
#define LIFELINE_REQUIRE_NETNS()                                                 \
    do {                                                                         \
        const std::string why = ::lifeline::testing::netns_unavailable_reason(); \
        if (!why.empty()) {                                                      \
            if (::lifeline::testing::in_ci()) FAIL() << "CI=true and " << why;   \
            GTEST_SKIP() << why;                                                 \
        }                                                                        \
    } while (0)

// Runs `fn` with this thread inside the named network namespace
// (/run/netns/NAME), and comes back, also when `fn` throws.
template <typename Fn>
auto in_namespace(const std::string& name, Fn&& fn) {
    const int self = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int target = ::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    const bool entered = self >= 0 && target >= 0 && ::setns(target, CLONE_NEWNET) == 0;
    if (target >= 0) ::close(target);
    if (!entered) {
        if (self >= 0) ::close(self);
        throw std::runtime_error("cannot enter namespace " + name);
    }
    struct Back {
        int self;
        ~Back() {
            const int back = ::setns(self, CLONE_NEWNET);
            ::close(self);
            if (back != 0) std::abort();  // Staying in the wrong namespace would poison every later test.
        }
    } back{self};
    return fn();
}

// Deletes namespaces left by earlier runs of tests with this prefix whose
// process is gone (a crashed or killed test cannot run its destructor).
inline void remove_stale_namespaces(const std::string& prefix) {
    const CommandResult list = run_command("ip netns list");
    std::size_t pos = 0;
    while (pos < list.output.size()) {
        const std::size_t end = list.output.find('\n', pos);
        const std::string line = list.output.substr(pos, end - pos);
        pos = end == std::string::npos ? list.output.size() : end + 1;
        const std::string name = line.substr(0, line.find(' '));
        if (name.rfind(prefix, 0) != 0) continue;
        // Names are <prefix><pid>-<role>.
        const int pid = std::atoi(name.c_str() + prefix.size());
        if (pid > 0 && ::kill(pid, 0) == 0) continue;
        run_command("ip netns del " + name);
    }
}

class SwitchedNetwork {
public:
    static constexpr const char* kPrefix = "llt-";

    explicit SwitchedNetwork(int hosts) : hosts_(hosts) {
        remove_stale_namespaces(kPrefix);
        base_ = std::string(kPrefix) + std::to_string(::getpid()) + "-" + std::to_string(counter()++) + "-";
        try {
            add_ns(switch_ns());
            must("ip -n " + switch_ns() + " link add br0 type bridge");
            must("ip -n " + switch_ns() + " link set br0 up");
            must("ip -n " + switch_ns() + " link set lo up");
            for (int i = 0; i < hosts; ++i) add_host(i);
        } catch (...) {
            teardown();
            throw;
        }
    }
    SwitchedNetwork(const SwitchedNetwork&) = delete;
    SwitchedNetwork& operator=(const SwitchedNetwork&) = delete;
    ~SwitchedNetwork() { teardown(); }

    std::string switch_ns() const { return base_ + "sw"; }
    std::string host_ns(int i) const { return base_ + "h" + std::to_string(i); }
    std::string address(int i) const { return "198.18.0." + std::to_string(i + 1); }
    const std::vector<std::string>& namespaces() const { return created_; }

    void pull_cable(int i) { must("ip -n " + switch_ns() + " link set p" + std::to_string(i) + " down"); }
    void plug_cable(int i) { must("ip -n " + switch_ns() + " link set p" + std::to_string(i) + " up"); }
    // A one-way fault: every packet arriving at host i is dropped (nftables in
    // its namespace), while what it sends still gets through.
    void drop_arrivals_at(int i) {
        must("ip netns exec " + host_ns(i) +
             " nft 'add table inet cut; add chain inet cut in { type filter hook input priority 0; policy accept; }; "
             "add rule inet cut in iifname eth0 drop'");
    }

    // Runs `fn` with this thread inside host i's namespace, and comes back.
    template <typename Fn>
    auto in_namespace_of(int i, Fn&& fn) const {
        return in_namespace(host_ns(i), std::forward<Fn>(fn));
    }

    // A socket created inside host i's namespace (it stays there for its life).
    int socket_in(int i, int domain, int type) {
        return in_namespace_of(i, [&] { return ::socket(domain, type, 0); });
    }

    // "ip netns exec <host i> <command>"
    std::string in_host(int i, const std::string& command) const {
        return "ip netns exec " + host_ns(i) + " " + command;
    }

private:
    static int& counter() {
        static int c = 0;
        return c;
    }

    void add_ns(const std::string& name) {
        must("ip netns add " + name);
        created_.push_back(name);
    }

    void add_host(int i) {
        const std::string ns = host_ns(i);
        const std::string port = "p" + std::to_string(i);
        add_ns(ns);
        must("ip -n " + switch_ns() + " link add " + port + " type veth peer name eth0 netns " + ns);
        must("ip -n " + switch_ns() + " link set " + port + " master br0");
        must("ip -n " + switch_ns() + " link set " + port + " up");
        must("ip -n " + ns + " link set lo up");
        must("ip -n " + ns + " addr add " + address(i) + "/24 dev eth0");
        must("ip -n " + ns + " link set eth0 up");
    }

    void teardown() {
        // Deleting a namespace deletes its veth ends, and so their peers.
        for (auto it = created_.rbegin(); it != created_.rend(); ++it) run_command("ip netns del " + *it);
        created_.clear();
    }

    int hosts_;
    std::string base_;
    std::vector<std::string> created_;
};

}  // namespace lifeline::testing
