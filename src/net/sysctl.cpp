#include "net/sysctl.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace lifeline::net {

namespace {
std::string proc_path(const std::string& name, const std::string& proc_sys) {
    std::string rel = name;
    std::replace(rel.begin(), rel.end(), '.', '/');
    return proc_sys + "/" + rel;
}

Result<int> read_int(const std::string& name, const std::string& proc_sys) {
    Result<std::string> text = read_sysctl(name, proc_sys);
    if (!text) return text.error();
    int v = 0;
    const std::string& t = *text;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || end != t.data() + t.size())
        return Error{name + ": expected a whole number, read '" + t + "'"};
    return v;
}
}  // namespace

Result<std::string> read_sysctl(const std::string& name, const std::string& proc_sys) {
    const std::string path = proc_path(name, proc_sys);
    std::ifstream in(path);
    if (!in) return system_error("read " + name + " (" + path + ")", errno);
    std::string value;
    std::getline(in, value);
    while (!value.empty() && (value.back() == '\n' || value.back() == ' ' || value.back() == '\t')) value.pop_back();
    return value;
}

Result<TcpKernelSettings> read_tcp_kernel_settings(const std::string& proc_sys) {
    TcpKernelSettings s;
    Result<int> time = read_int(kSysctlKeepaliveTime, proc_sys);
    if (!time) return time.error();
    Result<int> intvl = read_int(kSysctlKeepaliveIntvl, proc_sys);
    if (!intvl) return intvl.error();
    Result<int> probes = read_int(kSysctlKeepaliveProbes, proc_sys);
    if (!probes) return probes.error();
    Result<int> retries2 = read_int(kSysctlRetries2, proc_sys);
    if (!retries2) return retries2.error();
    Result<int> syn = read_int(kSysctlSynRetries, proc_sys);
    if (!syn) return syn.error();
    s.keepalive_time = Duration::seconds(*time);
    s.keepalive_intvl = Duration::seconds(*intvl);
    s.keepalive_probes = *probes;
    s.retries2 = *retries2;
    s.syn_retries = *syn;
    return s;
}

std::vector<SysctlSetting> keepalive_sysctls(const KeepalivePolicy& policy) {
    auto secs = [](Duration d) { return std::to_string(d.ns() / 1'000'000'000); };
    return {
        {kSysctlKeepaliveTime, secs(policy.idle)},
        {kSysctlKeepaliveIntvl, secs(policy.interval)},
        {kSysctlKeepaliveProbes, std::to_string(policy.count)},
    };
}

Result<void> write_sysctl(const SysctlSetting& setting, const std::string& proc_sys) {
    const std::string path = proc_path(setting.name, proc_sys);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return system_error("open " + path + " to set " + setting.name, errno);
    const std::string text = setting.value + "\n";
    const ssize_t n = ::write(fd, text.data(), text.size());
    const int write_errno = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size()))
        return system_error("write " + setting.name + " = " + setting.value, n < 0 ? write_errno : EIO);
    return {};
}

std::string sysctl_conf_text(const std::vector<SysctlSetting>& settings, const std::string& comment) {
    std::ostringstream out;
    std::istringstream lines(comment);
    for (std::string line; std::getline(lines, line);) out << "# " << line << "\n";
    for (const auto& s : settings) out << s.name << " = " << s.value << "\n";
    return out.str();
}

Result<void> write_file_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return system_error("create " + tmp, errno);
    const ssize_t n = ::write(fd, text.data(), text.size());
    const int write_errno = errno;
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size()) || !synced) {
        ::unlink(tmp.c_str());
        return system_error("write " + tmp, n < 0 ? write_errno : EIO);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return system_error("rename " + tmp + " to " + path, e);
    }
    return {};
}

}  // namespace lifeline::net
