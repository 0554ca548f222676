// `lifeline serve --mode websocket` against python3-websockets (Debian), a
// client whose protocol code nobody here wrote: it connects, its messages are
// echoed, it stays alive through many heartbeats (the library answers the
// server's pings by itself), and once SIGSTOPped the server declares it dead
// with heartbeat_timeout within the timeout. Bad input from a second
// connection (a malformed upgrade, an unmasked frame) gets its HTTP status or
// close code and costs only that connection. Server shutdown is close 1001.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "../core/websocket_client_frames.hpp"
#include "support/bounds.hpp"
#include "support/child_process.hpp"

namespace lifeline {
namespace {

using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kTimeout = 1s;

class WebSocketPython : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access(kPython, X_OK), 0) << kPython << " is missing (python3, scripts/install-deps.sh)";
        // ctest runs this suite again with LIFELINE_TEST_IO=uring ("uring." in front).
        const char* io = std::getenv("LIFELINE_TEST_IO");
        server_ = std::make_unique<ChildProcess>(std::vector<std::string>{
            LIFELINE_BINARY, "serve", "--mode", "websocket", "--listen", "127.0.0.1:0", "--heartbeat", "200ms",
            "--timeout", "1s", "--echo", "--io", io != nullptr && std::string(io) == "uring" ? "uring" : "epoll"});
        const std::optional<Json> listening = server_->wait_for_event("listening", 10s);
        ASSERT_TRUE(listening) << "the server did not start";
        const std::string address = listening->value("address", "");
        port_ = std::stoi(address.substr(address.rfind(':') + 1));
    }

    std::unique_ptr<ChildProcess> python_client(const std::string& id) {
        auto client = std::make_unique<ChildProcess>(std::vector<std::string>{
            kPython, WEBSOCKET_CLIENT, "ws://127.0.0.1:" + std::to_string(port_) + "/live?id=" + id});
        EXPECT_TRUE(client->wait_for_line("open", 10s)) << "python3-websockets did not connect";
        EXPECT_TRUE(client->wait_for_line("echo message 2 é", 10s)) << "no echo";
        return client;
    }

    std::optional<Json> await(const std::string& kind, const std::string& id, std::chrono::milliseconds limit) {
        return server_->seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == kind && j.value("id", "") == id; }, limit);
    }

    int raw_connection() {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port_));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        return fd;
    }

    // Everything the server writes until it closes (or 5 s pass).
    static std::string read_until_closed(int fd) {
        std::string out;
        char buf[4096];
        pollfd p{fd, POLLIN, 0};
        while (::poll(&p, 1, 5000) > 0) {
            const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        return out;
    }

    static constexpr const char* kPython = "/usr/bin/python3";  // Debian's, with python3-websockets.
    std::unique_ptr<ChildProcess> server_;
    int port_ = 0;
};

TEST_F(WebSocketPython, EchoedAliveThroughManyHeartbeatsAndDeadOnceStopped) {
    std::unique_ptr<ChildProcess> client = python_client("py-1");
    const std::optional<Json> hello = await("hello", "py-1", 5s);
    ASSERT_TRUE(hello) << "the ?id= names the client";
    // 15 heartbeat intervals with the client answering pings: no death.
    EXPECT_FALSE(await("dead", "py-1", 3s)) << "a live client was declared dead";
    EXPECT_TRUE(client->wait_for_line("echo message 20 é", 5s)) << "the echo stopped";

    client->signal(SIGSTOP);
    const auto stopped = std::chrono::steady_clock::now();
    const std::optional<Json> dead = await("dead", "py-1", kTimeout + testing::kSchedulingSlack);
    const auto latency = std::chrono::steady_clock::now() - stopped;
    ASSERT_TRUE(dead) << "the stopped client was never declared dead";
    EXPECT_EQ(dead->value("reason", ""), "heartbeat_timeout") << dead->dump();
    EXPECT_LE(latency, kTimeout + testing::kSchedulingSlack);
    const std::optional<Json> closed = await("closed", "py-1", 2s);
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->value("reason", ""), "heartbeat_timeout");
    client->signal(SIGCONT);
    std::printf("[ measured ] stopped python3-websockets client declared dead after %lld ms (timeout 1000 ms)\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count()));
}

TEST_F(WebSocketPython, BadInputCostsOnlyItsConnectionAndShutdownIs1001) {
    std::unique_ptr<ChildProcess> client = python_client("py-2");

    const int bad_upgrade = raw_connection();
    const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::send(bad_upgrade, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    EXPECT_THAT(read_until_closed(bad_upgrade), HasSubstr("HTTP/1.1 400 Bad Request"));

    const int unmasked = raw_connection();
    std::string wire = testing_ws::upgrade_request("/?id=raw-1");
    std::vector<std::uint8_t> frame;
    ws::append_frame(frame, ws::Opcode::text, std::vector<std::uint8_t>{'x'});  // As a server would: no mask.
    wire.append(frame.begin(), frame.end());
    ASSERT_EQ(::send(unmasked, wire.data(), wire.size(), MSG_NOSIGNAL), static_cast<ssize_t>(wire.size()));
    const std::string answer = read_until_closed(unmasked);
    EXPECT_THAT(answer, HasSubstr("101 Switching Protocols"));
    EXPECT_THAT(answer, HasSubstr(std::string("\x88", 1))) << "a close frame";
    EXPECT_THAT(answer, HasSubstr(std::string("\x03\xea", 2))) << "close code 1002";

    // The python client noticed nothing.
    EXPECT_TRUE(client->wait_for_line("echo message 15 é", 5s));
    EXPECT_FALSE(await("closed", "py-2", 0ms));

    server_->signal(SIGTERM);
    EXPECT_TRUE(client->wait_for_line("closed 1001", 5s)) << "shutdown is 1001 Going Away";
    EXPECT_EQ(server_->wait_exit(10s), 0);
}

}  // namespace
}  // namespace lifeline
