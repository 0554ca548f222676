// What the timer-less echo baselines (floor_echo_server, uring_echo_server)
// share: fatal errors with the program's name, and the --listen address.
// Header-only and free of the lifeline library, so the baselines measure only
// the kernel.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace echo_baseline {

inline const char* program_name = "echo baseline";

[[noreturn]] inline void die(const std::string& what) {
    std::fprintf(stderr, "%s: %s\n", program_name, what.c_str());
    std::exit(1);
}

[[noreturn]] inline void die_code(const std::string& what, int error) { die(what + ": " + std::strerror(error)); }

[[noreturn]] inline void die_errno(const std::string& what) { die_code(what, errno); }

// "a.b.c.d:port", IPv4 only (port 0 = any free port).
inline sockaddr_in parse_listen(std::string_view text) {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) die("--listen wants IPv4:PORT, got '" + std::string(text) + "'");
    const std::string host(text.substr(0, colon));
    const std::string port_text(text.substr(colon + 1));
    char* end = nullptr;
    const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port > 65535) die("bad port in '" + std::string(text) + "'");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) die("not an IPv4 address: '" + host + "'");
    return addr;
}

// The one argument both take: --listen IPv4:PORT (sets program_name too).
inline std::string listen_argument(int argc, char** argv, const char* name) {
    program_name = name;
    const std::string usage = std::string("usage: ") + name + " --listen IPv4:PORT";
    std::string listen_text;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--listen" && i + 1 < argc) {
            listen_text = argv[++i];
        } else {
            die(usage);
        }
    }
    if (listen_text.empty()) die(usage);
    return listen_text;
}

// Up to the hard limit: the baselines hold as many connections as the process may.
inline void raise_fd_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) die_errno("getrlimit(RLIMIT_NOFILE)");
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) die_errno("setrlimit(RLIMIT_NOFILE)");
}

}  // namespace echo_baseline
