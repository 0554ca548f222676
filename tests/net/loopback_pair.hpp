// Test helper: a connected TCP pair on 127.0.0.1 (loopback only).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace lifeline::testing {

class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept {
        reset(o.release());
        return *this;
    }
    ~Fd() { reset(); }
    int get() const { return fd_; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_;
};

struct LoopbackPair {
    Fd listener, client, server;
    std::uint16_t port = 0;
};

inline void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + " failed");
}

// listen on 127.0.0.1:0, connect, accept (blocking; loopback completes at once).
inline LoopbackPair make_loopback_pair() {
    LoopbackPair p;
    p.listener = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    check(p.listener.get() >= 0, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    check(::bind(p.listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "bind");
    check(::listen(p.listener.get(), 16) == 0, "listen");
    socklen_t len = sizeof(addr);
    check(::getsockname(p.listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
    p.port = ntohs(addr.sin_port);
    p.client = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    check(::connect(p.client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "connect");
    p.server = Fd(::accept4(p.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    check(p.server.get() >= 0, "accept");
    return p;
}

}  // namespace lifeline::testing
