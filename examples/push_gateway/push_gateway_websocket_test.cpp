// push_gateway with --mode websocket, on loopback: a python3-websockets client
// (what a browser's WebSocket does, with the id and credential in the query)
// is admitted, joins a room by a text command, receives a push from the HTTP
// API, and when its process is SIGSTOPped the gateway's close line says
// heartbeat_timeout; a wrong credential is refused with HTTP 403.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "credential.hpp"
#include "support/bounds.hpp"
#include "support/child_process.hpp"

namespace {

using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using namespace std::chrono_literals;

constexpr const char* kKey = "websocket-test-key";

// Connects, joins `lobby`, waits for one push, then keeps answering pings.
constexpr const char* kClient = R"(
import asyncio, sys, websockets
async def main():
    try:
        ws = await websockets.connect(sys.argv[1], ping_interval=None)
    except websockets.InvalidStatusCode as refused:
        print('refused', refused.status_code, flush=True); return
    await ws.send('join lobby')
    text = lambda m: m.decode() if isinstance(m, bytes) else m
    print('reply', text(await ws.recv()), flush=True)
    print('pushed', text(await ws.recv()), flush=True)
    await ws.wait_closed()
asyncio.run(main())
)";

class PushGatewayWebSocket : public ::testing::Test {
protected:
    void SetUp() override {
        gateway_ = std::make_unique<ChildProcess>(
            std::vector<std::string>{PUSH_GATEWAY, "--mode", "websocket", "--listen", "127.0.0.1:0", "--http",
                                     "127.0.0.1:0", "--key", kKey, "--heartbeat", "200ms", "--timeout", "1s"});
        const std::optional<Json> listening = gateway_->wait_for_event("listening", 10s);
        ASSERT_TRUE(listening) << "push_gateway did not start";
        listen_ = listening->value("listen", "");
        http_ = listening->value("http", "");
        ASSERT_EQ(http_.find(":0"), std::string::npos) << "the HTTP port actually bound is reported: " << http_;
    }
    std::unique_ptr<ChildProcess> client(const std::string& id, const std::string& credential) {
        return std::make_unique<ChildProcess>(std::vector<std::string>{
            "/usr/bin/python3", "-c", kClient, "ws://" + listen_ + "/push?id=" + id + "&token=" + credential});
    }
    std::unique_ptr<ChildProcess> gateway_;
    std::string listen_;
    std::string http_;
};

TEST_F(PushGatewayWebSocket, ABrowserStyleClientJoinsGetsPushesAndAStoppedOneIsHeartbeatTimeout) {
    std::unique_ptr<ChildProcess> alice = client("alice", push_gateway::credential_for(kKey, "alice"));
    ASSERT_TRUE(alice->wait_for_line("reply ok join lobby", 10s)) << "no reply to a text command";
    httplib::Client api("http://" + http_);
    const httplib::Result posted = api.Post("/rooms/lobby", "hello, lobby", "text/plain");
    ASSERT_TRUE(posted) << "the HTTP API did not answer";
    EXPECT_EQ(posted->status, 200) << posted->body;
    ASSERT_TRUE(alice->wait_for_line("pushed room lobby hello, lobby", 10s)) << "the push did not arrive";

    alice->signal(SIGSTOP);
    const std::optional<Json> closed = gateway_->wait_for(
        [](const Json& j) { return j.value("event", "") == "close" && j.value("id", "") == "alice"; },
        1s + lifeline::testing::kSchedulingSlack);
    alice->signal(SIGCONT);
    ASSERT_TRUE(closed) << "a stopped WebSocket client was not caught";
    EXPECT_EQ(closed->value("reason", ""), "heartbeat_timeout") << closed->dump();
}

TEST_F(PushGatewayWebSocket, AWrongCredentialIsRefusedAtTheUpgrade) {
    std::unique_ptr<ChildProcess> mallory = client("mallory", push_gateway::credential_for(kKey, "alice"));
    EXPECT_TRUE(mallory->wait_for_line("refused 403", 10s));
    EXPECT_TRUE(gateway_->wait_for([](const Json& j) { return j.value("event", "") == "rejected"; }, 10s));
}

}  // namespace
