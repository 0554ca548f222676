// The output budget against real faults, in network namespaces: the real
// `lifeline serve --echo` on host 0, a client on host 1 streaming 64 KiB
// chunks at it as fast as it can, a bystander on host 2.
//   - Cable pulled mid-transfer (with the server's echo verified in flight):
//     the server's queue fills because the path is dead, not because the peer
//     is slow. It must say user_timeout (within the user timeout + 1 s of the
//     pull), never slow_consumer.
//   - The client stops reading, path fine: slow_consumer once the grace
//     period is over, not before, and the bystander is not disturbed.
// Each for raw and framed mode, on both I/O backends. Needs root; skips with
// the reason otherwise, and fails instead of skipping when CI=true.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lifeline/engine/codec.hpp"
#include "net/sock_diag.hpp"
#include "support/bounds.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"

namespace lifeline {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using lifeline::testing::SwitchedNetwork;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr int kServerHost = 0;
constexpr int kClientHost = 1;
constexpr int kBystanderHost = 2;
constexpr std::uint16_t kPort = 8888;
constexpr auto kUserTimeout = 3s;
constexpr auto kGrace = 1500ms;  // The default: half the user timeout.
constexpr std::size_t kChunk = 64 * 1024;

struct Case {
    std::string mode;  // "raw" or "framed"
    std::string io;    // "epoll" or "uring"
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.mode + "_" + info.param.io; }
void PrintTo(const Case& c, std::ostream* out) { *out << c.mode << "/" << c.io; }

class Backpressure : public ::testing::TestWithParam<Case> {
protected:
    void SetUp() override {
        LIFELINE_REQUIRE_NETNS();
        net_ = std::make_unique<SwitchedNetwork>(3);
        const Case& c = GetParam();
        // The keepalive budget (1 + 1 x 3 = 4 s) is longer than the grace, so
        // the default grace is half the user timeout.
        server_ = std::make_unique<ChildProcess>(
            std::vector<std::string>{"ip", "netns", "exec", net_->host_ns(kServerHost), LIFELINE_BINARY, "serve",
                                     "--listen", net_->address(kServerHost) + ":" + std::to_string(kPort), "--mode",
                                     c.mode, "--io", c.io, "--echo", "--keepalive", "1s:1s:3", "--user-timeout",
                                     std::to_string(std::chrono::milliseconds(kUserTimeout).count()) + "ms",
                                     "--output-budget", "262144"},
            "true;");
        ASSERT_TRUE(server_->wait_for_event("listening", 10s)) << "the server did not start";
    }

    bool framed() const { return GetParam().mode == "framed"; }

    // A connected, non-blocking socket from `host`, greeted in framed mode
    // (timeout 10 s: longer than the user timeout, so heartbeats do not decide).
    int connect_from(int host) {
        const int fd = net_->socket_in(host, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
        EXPECT_GE(fd, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(kPort);
        ::inet_pton(AF_INET, net_->address(kServerHost).c_str(), &addr.sin_addr);
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
        if (framed()) {
            std::vector<std::uint8_t> hello;
            EXPECT_TRUE(append_frame(hello, Hello{kProtocolVersion, 1000, 10000, "h" + std::to_string(host)}).ok());
            EXPECT_EQ(::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
        }
        const int flags = ::fcntl(fd, F_GETFL);
        ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        fds_.push_back(fd);
        return fd;
    }

    // What one send carries: a 64 KiB chunk, as one DATA frame when framed
    // (the largest body the server takes, 64 KiB, less the frame header).
    std::vector<std::uint8_t> chunk() const {
        if (!framed()) return std::vector<std::uint8_t>(kChunk, 'x');
        std::vector<std::uint8_t> out;
        EXPECT_TRUE(append_frame(out, Data{std::vector<std::uint8_t>(kChunk - 64, 'x')}).ok());
        return out;
    }

    // Pushes `chunk` as fast as the socket takes it and, if `reading`, reads
    // the echo, until `bytes_echoed` came back (or, not reading, for `limit`).
    // Returns the bytes read. A chunk cut short by the end of one call is
    // finished by the next: starting a fresh frame after half of one would
    // break the framing (the server rightly closes that as protocol_error).
    std::size_t stream(int fd, bool reading, std::size_t bytes_echoed, milliseconds limit) {
        const std::vector<std::uint8_t> data = chunk();
        std::vector<std::uint8_t> in(256 * 1024);
        std::size_t& offset = send_offset_[fd];
        std::size_t got = 0;
        const auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline && (!reading || got < bytes_echoed)) {
            pollfd p{fd, static_cast<short>(POLLOUT | (reading ? POLLIN : 0)), 0};
            ::poll(&p, 1, 20);
            const ssize_t n = ::send(fd, data.data() + offset, data.size() - offset, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) offset = (offset + static_cast<std::size_t>(n)) % data.size();
            if (!reading) continue;
            const ssize_t r = ::recv(fd, in.data(), in.size(), MSG_DONTWAIT);
            if (r > 0) got += static_cast<std::size_t>(r);
            if (r == 0) break;
        }
        return got;
    }

    std::optional<Json> await(const std::string& kind, const std::string& peer, milliseconds limit) {
        return server_->seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == kind && j.value("peer", "") == peer; }, limit);
    }

    // True when the server's socket for `fd` holds data sent, unacknowledged
    // and retransmitted at least once (sock_diag, in the server's namespace).
    bool server_echo_in_flight(int fd) {
        net::DiagFilter filter;
        filter.local_port = kPort;
        filter.remote_port = local_port(fd);
        filter.ipv6 = false;
        const Result<std::vector<net::DiagSocket>> sockets =
            net_->in_namespace_of(kServerHost, [&] { return net::dump_tcp_sockets(filter); });
        if (!sockets) ADD_FAILURE() << sockets.error().message;
        if (!sockets || sockets->size() != 1 || !(*sockets)[0].info) return false;
        const sys::TcpInfo& info = *(*sockets)[0].info;
        return info.unacked > 0 && info.retransmits > 0;
    }

    static std::uint16_t local_port(int fd) {
        sockaddr_in a{};
        socklen_t len = sizeof(a);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        return ntohs(a.sin_port);
    }

    void TearDown() override {
        for (int fd : fds_) ::close(fd);
        server_.reset();
        net_.reset();
    }

    std::unique_ptr<SwitchedNetwork> net_;
    std::unique_ptr<ChildProcess> server_;
    std::vector<int> fds_;
    std::map<int, std::size_t> send_offset_;  // Per socket: how much of the current chunk is sent.
};

std::string local_name(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(a.sin_port));
}

double since_ms(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

TEST_P(Backpressure, CablePulledMidTransferIsUserTimeoutNotSlowConsumer) {
    const int fd = connect_from(kClientHost);
    const std::string peer = local_name(fd);
    // Steady state first: 16 MiB echoed while we keep reading.
    ASSERT_GE(stream(fd, /*reading=*/true, 16u << 20, 20s), 16u << 20) << "the echo did not flow";
    // "Mid-transfer" has to be true when the cable goes: if the server's echo
    // had all been acknowledged by then, nothing would be outstanding and
    // keepalive (cut short by the user timeout) would rightly be the verdict.
    // So the echo's way back is cut first, the client keeps sending (and
    // reading, so its window stays open), and the cable is pulled only once
    // the server's own socket shows data in flight, retransmitted.
    net_->drop_arrivals_at(kClientHost);
    const auto cut = Clock::now();
    bool in_flight = false;
    while (!in_flight && Clock::now() < cut + 10s) {
        stream(fd, /*reading=*/true, 1, 20ms);
        in_flight = server_echo_in_flight(fd);
    }
    ASSERT_TRUE(in_flight) << "the server never had unacknowledged echo after the way back was cut";
    net_->pull_cable(kClientHost);
    const auto pulled = Clock::now();

    const std::optional<Json> closed =
        await("closed", peer, milliseconds(kUserTimeout) + 1s + lifeline::testing::kSchedulingSlack);
    const double latency_ms = since_ms(pulled);
    ASSERT_TRUE(closed) << "the server did not close the connection within the user timeout + 1 s";
    EXPECT_EQ(closed->value("reason", ""), "user_timeout") << closed->dump();
    EXPECT_EQ(closed->value("peer", ""), peer) << "the peer recorded at accept, not \"?\"";
    const double bound_ms = std::chrono::duration<double, std::milli>(kUserTimeout + 1s).count();
    EXPECT_LE(latency_ms, bound_ms + lifeline::testing::kSchedulingSlackMs);
    for (const Json& e : server_->events()) {
        if (e.value("peer", "") != peer) continue;
        EXPECT_NE(e.value("reason", ""), "slow_consumer") << e.dump();
        EXPECT_EQ(e.value("message", "").find("peer is not reading"), std::string::npos) << e.dump();
    }
    const std::optional<Json> dead = await("dead", peer, 1s);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->value("reason", ""), "user_timeout");
    std::printf("[ measured ] %s/%s: user_timeout %.0f ms after the pull (user timeout %lld ms)\n",
                GetParam().mode.c_str(), GetParam().io.c_str(), latency_ms,
                static_cast<long long>(milliseconds(kUserTimeout).count()));
}

TEST_P(Backpressure, AReaderThatStopsIsSlowConsumerAfterTheGraceAndCostsOnlyItself) {
    const int bystander = connect_from(kBystanderHost);
    const std::string bystander_peer = local_name(bystander);
    ASSERT_GE(stream(bystander, true, 1u << 20, 10s), 1u << 20);

    const int fd = connect_from(kClientHost);
    const std::string peer = local_name(fd);
    const int small = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    const auto started = Clock::now();
    // The stuck reader sends without reading while the bystander keeps its echo flowing.
    std::optional<Json> closed;
    std::size_t bystander_echoed = 0;
    while (!closed && Clock::now() < started + 15s) {
        stream(fd, /*reading=*/false, 0, 50ms);
        bystander_echoed += stream(bystander, /*reading=*/true, 256 * 1024, 1s);
        closed = await("closed", peer, 50ms);
    }
    const double latency_ms = since_ms(started);
    ASSERT_TRUE(closed) << "the server never closed the reader that stopped (" << peer << "); its events: " << [&] {
        std::string all;
        for (const Json& e : server_->events()) all += "\n  " + e.dump();
        return all;
    }();
    EXPECT_EQ(closed->value("reason", ""), "slow_consumer") << closed->dump();
    EXPECT_EQ(closed->value("peer", ""), peer);
    // Not before the grace: the queue has to fill first, then the grace runs.
    const double grace_ms = std::chrono::duration<double, std::milli>(kGrace).count();
    EXPECT_GE(latency_ms, grace_ms);
    const std::optional<Json> error = await("error", peer, 1s);
    ASSERT_TRUE(error);
    EXPECT_NE(error->value("message", "").find("peer is not reading"), std::string::npos) << error->dump();
    // The server stopped reading from it: far less than it offered went in.
    EXPECT_LT(closed->value("bytes_in", std::uint64_t{0}), std::uint64_t{16} << 20) << closed->dump();

    // The bystander keeps its echo afterwards, and was never closed.
    EXPECT_GE(stream(bystander, true, 1u << 20, 10s), 1u << 20);
    EXPECT_GT(bystander_echoed, 0u);
    for (const Json& e : server_->events()) {
        if (e.value("peer", "") == bystander_peer) {
            EXPECT_NE(e.value("event", ""), "closed") << e.dump();
        }
    }
    std::printf("[ measured ] %s/%s: slow_consumer %.0f ms after the reader stopped (grace %lld ms)\n",
                GetParam().mode.c_str(), GetParam().io.c_str(), latency_ms,
                static_cast<long long>(milliseconds(kGrace).count()));
}

INSTANTIATE_TEST_SUITE_P(ModesAndBackends, Backpressure,
                         ::testing::Values(Case{"raw", "epoll"}, Case{"raw", "uring"}, Case{"framed", "epoll"},
                                           Case{"framed", "uring"}),
                         case_name);

}  // namespace
}  // namespace lifeline
