// The gateway API over WebSocket, with python3-websockets clients: on_hello
// sees the upgrade (id from ?id=, credential from ?token=, the target) and
// admits or rejects it (HTTP 403 with lifeline's code in a header), the
// server sends and broadcasts to browsers' kind of client, and a client that
// comes back with the resume token it was issued (Lifeline-Resume-Token, sent
// back as ?resume=) takes over its old connection, which ends with close 4004
// (session_replaced); without the token the claim is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "gateway_support.hpp"
#include "support/child_process.hpp"

namespace lifeline::gateway_test {
namespace {

using lifeline::testing::ChildProcess;

constexpr const char* kPython = "/usr/bin/python3";

Admission check_token(const HelloInfo& hello) {
    if (hello.credential != "good") return Reject{4401, "bad token"};
    if (hello.target.rfind("/live?", 0) != 0) return Reject{4404, "unknown path"};
    return default_admission(hello);  // Takeover needs the resume token.
}

class WebSocketGateway : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access(kPython, X_OK), 0) << kPython << " is missing";
        ServerOptions o;
        o.mode = ServerMode::websocket;
        o.heartbeat = Duration::milliseconds(200);
        o.timeout = Duration::seconds(1);
        gateway_ = std::make_unique<Gateway>(o, check_token);
    }

    std::unique_ptr<ChildProcess> client(const std::string& query) {
        return std::make_unique<ChildProcess>(std::vector<std::string>{
            kPython, WEBSOCKET_CLIENT, "ws://127.0.0.1:" + std::to_string(gateway_->port()) + "/live?" + query});
    }

    std::unique_ptr<Gateway> gateway_;
};

TEST_F(WebSocketGateway, OnHelloAdmitsByTokenAndRefusalsAre403) {
    auto bad = client("id=dev-1&token=wrong");
    EXPECT_TRUE(bad->wait_for_line("refused 403", kLimit));
    auto good = client("id=dev-1&token=good");
    ASSERT_TRUE(good->wait_for_line("open", kLimit));
    const Record r = gateway_->wait([](const Record& x) { return !x.messages.empty(); });
    ASSERT_EQ(r.opened.size(), 1u);
    EXPECT_EQ(r.messages.front().second, "message 0 é");
    // The application's own send reaches the client: its loop prints the next reply.
    ASSERT_EQ(gateway_->server().send(r.opened.front(), bytes_of("from the gateway")).ok(), true);
    EXPECT_TRUE(good->wait_for_line("echo b'from the gateway'", kLimit));
    EXPECT_EQ(gateway_->server().broadcast(bytes_of("to all")), 1u);
    EXPECT_TRUE(good->wait_for_line("echo b'to all'", kLimit));
}

TEST_F(WebSocketGateway, TheResumeTokenTakesOverAndAClaimWithoutItIsRefused) {
    auto first = client("id=dev-2&token=good");
    ASSERT_TRUE(first->wait_for_line("open", kLimit));
    std::optional<std::string> resume;
    for (int i = 0; i < 3 && !resume; ++i) {
        std::optional<std::string> line = first->next_line(kLimit);
        if (line && line->rfind("resume ", 0) == 0) resume = line->substr(7);
    }
    ASSERT_TRUE(resume) << "no Lifeline-Resume-Token header in the 101";
    EXPECT_EQ(resume->size(), 32u) << "16 bytes, in hex";

    auto impostor = client("id=dev-2&token=good");
    EXPECT_TRUE(impostor->wait_for_line("refused 403", kLimit)) << "a live id claimed without its token";

    auto back = client("id=dev-2&token=good&resume=" + *resume);
    ASSERT_TRUE(back->wait_for_line("open", kLimit));
    EXPECT_TRUE(first->wait_for_line("closed 4004", kLimit)) << "the old connection ends with session_replaced";
    // on_close runs for admitted connections only: the refused impostor has none.
    const Record r = gateway_->wait([](const Record& x) { return !x.closed.empty(); });
    ASSERT_EQ(r.closed.size(), 1u);
    EXPECT_EQ(r.closed.front().second, DisconnectReason::session_replaced);
}

}  // namespace
}  // namespace lifeline::gateway_test
