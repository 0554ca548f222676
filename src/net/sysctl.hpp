// The TCP sysctls that decide dead-peer detection, read from and written to
// /proc/sys. They are per network namespace: a process sees and changes those
// of the namespace it runs in.
#pragma once

#include <string>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"

namespace lifeline::net {

inline constexpr const char* kSysctlKeepaliveTime = "net.ipv4.tcp_keepalive_time";
inline constexpr const char* kSysctlKeepaliveIntvl = "net.ipv4.tcp_keepalive_intvl";
inline constexpr const char* kSysctlKeepaliveProbes = "net.ipv4.tcp_keepalive_probes";
inline constexpr const char* kSysctlRetries2 = "net.ipv4.tcp_retries2";
inline constexpr const char* kSysctlSynRetries = "net.ipv4.tcp_syn_retries";

// Reads the five settings from `proc_sys` (default /proc/sys).
Result<TcpKernelSettings> read_tcp_kernel_settings(const std::string& proc_sys = "/proc/sys");

struct SysctlSetting {
    std::string name;   // "net.ipv4.tcp_keepalive_time"
    std::string value;  // "7"
};

// The three keepalive sysctls that make `policy` the host's default for
// sockets with SO_KEEPALIVE and no per-socket overrides.
std::vector<SysctlSetting> keepalive_sysctls(const KeepalivePolicy& policy);

// Writes one setting ("net.ipv4.tcp_keepalive_time" -> /proc/sys/net/ipv4/tcp_keepalive_time).
Result<void> write_sysctl(const SysctlSetting& setting, const std::string& proc_sys = "/proc/sys");
Result<std::string> read_sysctl(const std::string& name, const std::string& proc_sys = "/proc/sys");

// The text of an /etc/sysctl.d/ snippet for `settings`, with a comment header.
std::string sysctl_conf_text(const std::vector<SysctlSetting>& settings, const std::string& comment);

// Writes `text` to `path` atomically (temporary file + rename), mode 0644.
Result<void> write_file_atomically(const std::string& path, const std::string& text);

}  // namespace lifeline::net
