// TCP endpoints: parse "host:port", open listeners and non-blocking connects.
// Every syscall is checked; errors name the address and errno.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "lifeline/result.hpp"

namespace lifeline::net {

struct Endpoint {
    sockaddr_storage addr{};
    socklen_t len = 0;
    std::string to_string() const;  // "127.0.0.1:8888", "[::1]:8888"
    std::uint16_t port() const;
};

// "127.0.0.1:8888", "0.0.0.0:8888", "[::1]:8888", "localhost:8888", ":8888" (any IPv4).
// Numeric addresses only, plus "localhost": no DNS in a liveness tool's hot path.
Result<Endpoint> parse_endpoint(std::string_view text);

// "127.0.0.1:8888" or "[::1]:8888" for an address in network byte order
// (4 bytes for AF_INET, 16 for AF_INET6) and a port in host byte order.
std::string format_address(int family, const void* addr, std::uint16_t port);

// The peer (or local) address of a connected socket.
std::string peer_address(int fd);
std::string local_address(int fd);

// socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen; non-blocking, close-on-exec.
Result<int> listen_tcp(const Endpoint& endpoint, bool reuse_port, int backlog);

// A non-blocking socket with connect() started. EINPROGRESS is success: wait
// for EPOLLOUT and check SO_ERROR (connect_result()).
Result<int> start_connect(const Endpoint& endpoint);
// The same, bound to `source` first (its port is normally 0). With
// IP_BIND_ADDRESS_NO_PORT the port is picked at connect time for the whole
// 4-tuple, so each source address has the full ephemeral range per server.
Result<int> start_connect(const Endpoint& endpoint, const Endpoint& source);

// After EPOLLOUT on a connecting socket: 0 if connected, else the errno.
int connect_result(int fd);

Result<void> set_nodelay(int fd);

}  // namespace lifeline::net
