// Test support for the protect/reap tests: the plain C programs run in a
// host namespace, and sock_diag views of a namespace from the test process.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/pidfd.hpp"
#include "net/sock_diag.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"

namespace lifeline::testing {

// The established TCP sockets of namespace `ns` with local or remote `port`,
// dumped from inside it (sock_diag answers for its own namespace only).
inline std::vector<net::DiagSocket> established_in(const std::string& ns, std::uint16_t port) {
    net::DiagFilter filter;
    filter.states = 1u << static_cast<int>(sys::TcpState::established);
    filter.any_port = port;
    Result<std::vector<net::DiagSocket>> sockets = in_namespace(ns, [&] { return net::dump_tcp_sockets(filter); });
    if (!sockets) throw std::runtime_error(sockets.error().message);
    return std::move(*sockets);
}

// A program from tests/cli/programs, started inside host `host`'s namespace
// (`ip netns exec` execs it: the child's pid is the program's).
inline std::unique_ptr<ChildProcess> start_in(const SwitchedNetwork& net, int host, std::vector<std::string> argv) {
    std::vector<std::string> full{"/usr/bin/env", "ip", "netns", "exec", net.host_ns(host)};
    full.insert(full.end(), argv.begin(), argv.end());
    return std::make_unique<ChildProcess>(full);
}

// The next output line containing `text`, or nullopt at the deadline.
inline std::optional<std::string> line_with(ChildProcess& p, const std::string& text, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        std::optional<std::string> line = p.next_line(left);
        if (!line) return std::nullopt;
        if (line->find(text) != std::string::npos) return line;
    }
}

// Our duplicate (pidfd_getfd) of the socket a plain_server reports next as
// "accepted FD"; -1, with a test failure, when it does not.
inline net::OwnedFd accepted_socket(ChildProcess& server) {
    const std::optional<std::string> accepted = line_with(server, "accepted ", std::chrono::seconds(10));
    if (!accepted) {
        ADD_FAILURE() << "the server accepted nothing";
        return net::OwnedFd();
    }
    Result<net::PidFd> pidfd = net::PidFd::open(server.pid());
    Result<net::OwnedFd> dup =
        pidfd ? pidfd->duplicate(std::stoi(accepted->substr(9))) : Result<net::OwnedFd>(pidfd.error());
    if (!dup) {
        ADD_FAILURE() << dup.error().message;
        return net::OwnedFd();
    }
    return std::move(*dup);
}

// The socket's pending error (SO_ERROR) once poll says it is readable (an
// error or EOF); 0 at the bound or without one.
inline int wait_for_error(int fd, std::chrono::milliseconds limit) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return 0;
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

}  // namespace lifeline::testing
