// `lifeline connect` as a WebSocket and TLS client of the real `lifeline
// serve`, both binaries as child processes on loopback: ws://, wss:// and the
// framed protocol over TLS each open, measure RTT from the client's own pings,
// stay alive through many heartbeats, and catch a server that stops (SIGSTOP)
// as heartbeat_timeout within the client's timeout. The server's shutdown
// reaches a WebSocket client as close 1001, and a certificate nobody vouched
// for is refused with the reason. The certificate is made by the test with
// the openssl command.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/bounds.hpp"
#include "support/certificate.hpp"
#include "support/child_process.hpp"

namespace lifeline {
namespace {

using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using namespace std::chrono_literals;

struct Wire {
    const char* name;
    const char* serve_mode;
    bool tls;
    const char* scheme;  // "" = HOST:PORT
};

std::ostream& operator<<(std::ostream& os, const Wire& w) { return os << w.name; }

class ConnectWire : public ::testing::TestWithParam<Wire> {
protected:
    static void SetUpTestSuite() {
        dir_ = std::filesystem::temp_directory_path() / ("lifeline-connect-ws-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
        for (const char* name : {"server", "other"}) {
            const testing::CommandResult r = testing::make_self_signed_certificate(file(name));
            ASSERT_EQ(r.status, 0) << "openssl (scripts/install-deps.sh) could not make a certificate: " << r.output;
        }
    }
    static void TearDownTestSuite() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    static std::string file(const std::string& name) { return (dir_ / name).string(); }

    // The server judges slowly (2 s / 6 s): the client's own pings at 200 ms
    // are what keeps the connection busy, so its RTT samples are its own.
    void start_server() {
        std::vector<std::string> argv = {LIFELINE_BINARY,       "serve",       "--listen", "127.0.0.1:0", "--mode",
                                         GetParam().serve_mode, "--heartbeat", "2s",       "--timeout",   "6s"};
        if (GetParam().tls)
            argv.insert(argv.end(), {"--tls-cert", file("server.pem"), "--tls-key", file("server.key")});
        server_ = std::make_unique<ChildProcess>(argv);
        const std::optional<Json> listening = server_->wait_for_event("listening", 10s);
        ASSERT_TRUE(listening) << "the server did not start";
        const std::string address = listening->value("address", "");
        port_ = address.substr(address.rfind(':') + 1);
    }
    std::string target() const {
        const std::string host = "127.0.0.1:" + port_;
        return std::string(GetParam().scheme).empty() ? host : std::string(GetParam().scheme) + host + "/live";
    }
    std::unique_ptr<ChildProcess> connect(const std::string& ca) {
        std::vector<std::string> argv = {LIFELINE_BINARY, "connect", target(),    "--id", "c-1",
                                         "--heartbeat",   "200ms",   "--timeout", "1s"};
        if (GetParam().tls) {
            argv.insert(argv.end(), {"--tls-ca", ca});
            if (std::string(GetParam().scheme).empty()) argv.push_back("--tls");
        }
        return std::make_unique<ChildProcess>(argv);
    }

    static inline std::filesystem::path dir_;
    std::unique_ptr<ChildProcess> server_;
    std::string port_;
};

TEST_P(ConnectWire, OpensPingsStaysAliveAndCatchesAStoppedServer) {
    ASSERT_NO_FATAL_FAILURE(start_server());
    std::unique_ptr<ChildProcess> client = connect(file("server.pem"));
    const std::optional<Json> hello = client->wait_for_event("hello", 10s);
    ASSERT_TRUE(hello) << "the client never opened";
    EXPECT_EQ(hello->value("timeout_ms", 0.0), 1000.0);
    const std::optional<Json> opened = server_->seen_or_wait_for(
        [](const Json& j) { return j.value("event", "") == "hello" && j.value("id", "") == "c-1"; }, 10s);
    EXPECT_TRUE(opened) << "the server did not see id c-1";
    // 15 of the client's intervals, 3 of its timeouts: alive throughout.
    for (int i = 0; i < 15; ++i) ASSERT_TRUE(client->wait_for_event("rtt", 200ms + testing::kSchedulingSlack));
    EXPECT_FALSE(client->seen_or_wait_for([](const Json& j) { return j.value("event", "") == "dead"; }, 0ms))
        << "a live server was declared dead";

    server_->signal(SIGSTOP);
    const std::optional<Json> dead = client->wait_for_event("dead", 1s + 200ms + testing::kSchedulingSlack);
    server_->signal(SIGCONT);
    ASSERT_TRUE(dead) << "a stopped server was not caught";
    EXPECT_EQ(dead->value("reason", ""), "heartbeat_timeout");
    EXPECT_EQ(dead->value("budget_ms", 0.0), 1000.0);
}

TEST_P(ConnectWire, TheServersShutdownEndsTheClientWithItsReason) {
    ASSERT_NO_FATAL_FAILURE(start_server());
    std::unique_ptr<ChildProcess> client = connect(file("server.pem"));
    ASSERT_TRUE(client->wait_for_event("hello", 10s));
    server_->signal(SIGTERM);
    const std::optional<Json> closed = client->wait_for_event("closed", 10s);
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->value("reason", ""), "peer_closed") << closed->dump();
    if (std::string(GetParam().serve_mode) == "websocket") {
        EXPECT_NE(closed->value("message", "").find("1001"), std::string::npos) << closed->dump();
    }
    EXPECT_EQ(client->wait_exit(10s), 1) << "a connection that ended unasked is exit status 1";
}

class ConnectTlsWire : public ConnectWire {};

TEST_P(ConnectTlsWire, ACertificateNobodyVouchedForIsRefused) {
    ASSERT_NO_FATAL_FAILURE(start_server());
    std::unique_ptr<ChildProcess> client = connect(file("other.pem"));
    const std::optional<Json> failed = client->wait_for(
        [](const Json& j) { return j.value("event", "") == "error" || j.value("event", "") == "closed"; }, 10s);
    ASSERT_TRUE(failed);
    EXPECT_NE(failed->value("message", "").find("certificate"), std::string::npos) << failed->dump();
    EXPECT_FALSE(client->seen_or_wait_for([](const Json& j) { return j.value("event", "") == "hello"; }, 0ms));
}

INSTANTIATE_TEST_SUITE_P(Wires, ConnectWire,
                         ::testing::Values(Wire{"ws", "websocket", false, "ws://"},
                                           Wire{"wss", "websocket", true, "wss://"},
                                           Wire{"framed_tls", "framed", true, ""}),
                         [](const ::testing::TestParamInfo<Wire>& wire) { return std::string(wire.param.name); });
INSTANTIATE_TEST_SUITE_P(Wires, ConnectTlsWire,
                         ::testing::Values(Wire{"wss", "websocket", true, "wss://"},
                                           Wire{"framed_tls", "framed", true, ""}),
                         [](const ::testing::TestParamInfo<Wire>& wire) { return std::string(wire.param.name); });

}  // namespace
}  // namespace lifeline
