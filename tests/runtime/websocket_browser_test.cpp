// `lifeline serve --mode websocket` against headless Chromium (Debian
// `chromium`): a page opens the browser's own WebSocket, and the browser's
// network stack answers the server's pings with no page code. Alive through
// many ping intervals; with the whole browser SIGSTOPped the server reports
// heartbeat_timeout within the timeout, and once resumed the page learns the
// connection is gone (its owed pongs meet the closed socket's RST first, so
// the code it sees is 1006, not the 4007 that was sent); a server shutdown is
// close code 1001 in the page.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "support/bounds.hpp"
#include "support/child_process.hpp"

namespace lifeline {
namespace {

using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using namespace std::chrono_literals;

constexpr auto kTimeout = 1s;
constexpr const char* kChromium = "/usr/bin/chromium";

class WebSocketBrowser : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access(kChromium, X_OK), 0) << "chromium is missing (scripts/install-deps.sh installs it)";
        dir_ = std::filesystem::temp_directory_path() /
               ("lifeline-browser-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
        std::filesystem::create_directories(dir_);
        server_ = std::make_unique<ChildProcess>(
            std::vector<std::string>{LIFELINE_BINARY, "serve", "--mode", "websocket", "--listen", "127.0.0.1:0",
                                     "--heartbeat", "200ms", "--timeout", "1s", "--echo"});
        const std::optional<Json> listening = server_->wait_for_event("listening", 10s);
        ASSERT_TRUE(listening) << "the server did not start";
        const std::string address = listening->value("address", "");
        const std::string port = address.substr(address.rfind(':') + 1);
        std::ofstream page(dir_ / "page.html");
        page << "<!doctype html><script>\n"
             << "const ws = new WebSocket('ws://127.0.0.1:" << port << "/live?id=browser-1');\n"
             << "ws.onopen = () => { console.log('lifeline-test open'); ws.send('hello from the browser'); };\n"
             << "ws.onmessage = (m) => console.log('lifeline-test echo ' + m.data);\n"
             << "ws.onclose = (e) => console.log('lifeline-test closed ' + e.code);\n"
             << "</script>\n";
    }

    void TearDown() override {
        if (browser_) ::kill(-browser_->pid(), SIGCONT);
        browser_.reset();  // SIGKILLs what is left of it.
        if (browser_pgid_ > 0) ::kill(-browser_pgid_, SIGKILL);
        server_.reset();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    void open_page() {
        // Root in a container: Chromium's sandbox needs user namespaces it may
        // not get, and the test page is ours. Console lines go to stderr.
        browser_ = std::make_unique<ChildProcess>(
            std::vector<std::string>{kChromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                     "--enable-logging=stderr", "--v=0",
                                     "--user-data-dir=" + (dir_ / "profile").string(),
                                     "file://" + (dir_ / "page.html").string()},
            "exec 2>&1;");
        browser_pgid_ = browser_->pid();  // ChildProcess puts it in a process group of its own.
        ASSERT_TRUE(browser_->wait_for_line("lifeline-test echo hello from the browser", 30s))
            << "the page did not connect and get its echo";
    }

    std::optional<Json> await(const std::string& kind, std::chrono::milliseconds limit) {
        return server_->seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == kind && j.value("id", "") == "browser-1"; }, limit);
    }

    static inline int counter_ = 0;
    std::filesystem::path dir_;
    std::unique_ptr<ChildProcess> server_;
    std::unique_ptr<ChildProcess> browser_;
    pid_t browser_pgid_ = -1;
};

TEST_F(WebSocketBrowser, AliveThroughManyPingsDeadOnceStoppedAndThePageLearnsItOnResume) {
    ASSERT_NO_FATAL_FAILURE(open_page());
    ASSERT_TRUE(await("hello", 5s));
    EXPECT_FALSE(await("dead", 3s)) << "a live browser was declared dead (15 ping intervals)";

    ::kill(-browser_pgid_, SIGSTOP);  // Every Chromium process: the network service answers pings.
    const auto stopped = std::chrono::steady_clock::now();
    const std::optional<Json> dead = await("dead", kTimeout + testing::kSchedulingSlack);
    const auto latency = std::chrono::steady_clock::now() - stopped;
    ASSERT_TRUE(dead) << "the stopped browser was never declared dead";
    EXPECT_EQ(dead->value("reason", ""), "heartbeat_timeout") << dead->dump();
    ::kill(-browser_pgid_, SIGCONT);
    EXPECT_TRUE(browser_->wait_for_line("lifeline-test closed ", 10s)) << "the resumed page never saw the close";
    std::printf("[ measured ] stopped Chromium declared dead after %lld ms (timeout 1000 ms)\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count()));
}

TEST_F(WebSocketBrowser, AServerShutdownIs1001InThePage) {
    ASSERT_NO_FATAL_FAILURE(open_page());
    server_->signal(SIGTERM);
    EXPECT_TRUE(browser_->wait_for_line("lifeline-test closed 1001", 10s)) << "shutdown is 1001 Going Away";
    EXPECT_EQ(server_->wait_exit(10s), 0);
}

}  // namespace
}  // namespace lifeline
