#include "net/endpoint.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace lifeline::net {

std::string format_address(int family, const void* addr, std::uint16_t port) {
    if (family != AF_INET && family != AF_INET6) return "<address family " + std::to_string(family) + ">";
    char text[INET6_ADDRSTRLEN] = {};
    // inet_ntop only fails for an unknown family or a short buffer; neither can happen here.
    ::inet_ntop(family, addr, text, sizeof(text));
    std::string out;
    if (family == AF_INET6) out += '[';
    out += text;
    if (family == AF_INET6) out += ']';
    out += ':';
    out += std::to_string(port);
    return out;
}

namespace {
std::string format(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        return format_address(AF_INET, &a->sin_addr, ntohs(a->sin_port));
    }
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    return format_address(ss.ss_family, &a->sin6_addr, ntohs(a->sin6_port));
}

std::string name_of(int fd, bool peer) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                       : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return r == 0 ? format(ss) : "?";
}
}  // namespace

std::string Endpoint::to_string() const { return format(addr); }

std::uint16_t Endpoint::port() const {
    if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
}

Result<Endpoint> parse_endpoint(std::string_view text) {
    const auto bad = [&](const char* why) {
        return Error{"invalid address '" + std::string(text) + "': " + why +
                     " (expected HOST:PORT such as 127.0.0.1:8888, 0.0.0.0:8888, [::1]:8888 or localhost:8888)"};
    };
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    std::string host(text.substr(0, colon));
    const std::string_view port_text = text.substr(colon + 1);
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) return bad("bad port");
    Endpoint ep;
    if (host.empty()) host = "0.0.0.0";
    if (host == "localhost") host = "127.0.0.1";
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ep.addr);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a->sin6_addr) != 1)
            return bad("not an IPv6 address");
        ep.len = sizeof(sockaddr_in6);
        return ep;
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ep.addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return bad("not a numeric IPv4 address");
    ep.len = sizeof(sockaddr_in);
    return ep;
}

std::string peer_address(int fd) { return name_of(fd, true); }
std::string local_address(int fd) { return name_of(fd, false); }

Result<int> listen_tcp(const Endpoint& endpoint, bool reuse_port, int backlog) {
    const int fd = ::socket(endpoint.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return system_error("socket() for " + endpoint.to_string(), errno);
    const int one = 1;
    auto fail = [&](const std::string& what) {
        const int e = errno;
        ::close(fd);
        return system_error(what + " " + endpoint.to_string(), e);
    };
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) return fail("SO_REUSEADDR on");
    if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        return fail("SO_REUSEPORT on");
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.addr), endpoint.len) != 0) return fail("bind");
    if (::listen(fd, backlog) != 0) return fail("listen on");
    return fd;
}

Result<int> start_connect(const Endpoint& endpoint) {
    const int fd = ::socket(endpoint.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return system_error("socket() to connect to " + endpoint.to_string(), errno);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.addr), endpoint.len) != 0 && errno != EINPROGRESS) {
        const int e = errno;
        ::close(fd);
        return system_error("connect to " + endpoint.to_string(), e);
    }
    return fd;
}

Result<int> start_connect(const Endpoint& endpoint, const Endpoint& source) {
    const int fd = ::socket(endpoint.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return system_error("socket() to connect to " + endpoint.to_string(), errno);
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) != 0 ||
        ::bind(fd, reinterpret_cast<const sockaddr*>(&source.addr), source.len) != 0) {
        const int e = errno;
        ::close(fd);
        return system_error("bind to " + source.to_string() + " before connecting", e);
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.addr), endpoint.len) != 0 && errno != EINPROGRESS) {
        const int e = errno;
        ::close(fd);
        return system_error("connect from " + source.to_string() + " to " + endpoint.to_string(), e);
    }
    return fd;
}

int connect_result(int fd) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
}

Result<void> set_nodelay(int fd) {
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        return system_error("setsockopt(TCP_NODELAY) on socket " + std::to_string(fd), errno);
    return {};
}

}  // namespace lifeline::net
