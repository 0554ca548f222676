// `lifeline serve --workers N` end to end on loopback: one address, N worker
// processes, one event stream, summed /metrics, a killed worker restarted.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "support/child_process.hpp"

namespace lifeline {
namespace {

using namespace std::chrono_literals;
using lifeline::testing::ChildProcess;
using Json = nlohmann::json;

std::vector<pid_t> children_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    std::vector<pid_t> out;
    for (pid_t c; in >> c;) out.push_back(c);
    return out;
}

double metric(const std::string& url, const std::string& name) {
    httplib::Client client(url);
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) return -1;
    const std::regex line("(^|\n)" + name + " ([0-9.e+]+)");
    std::smatch m;
    return std::regex_search(res->body, m, line) ? std::stod(m[2]) : -1;
}

// Polls a condition that has no event of its own (a scrape), bounded in time.
bool eventually(const std::function<bool()>& condition, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return condition();
}

TEST(ServeWorkers, OneAddressSeveralProcessesSummedMetricsAndRestarts) {
    ChildProcess server({LIFELINE_BINARY, "serve", "--workers", "3", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                         "--heartbeat", "200ms", "--timeout", "1s"});
    const auto listening = server.wait_for_event("listening", 15s);
    ASSERT_TRUE(listening);
    EXPECT_EQ((*listening)["workers"], 3);
    const std::string address = (*listening)["address"];
    const auto http = server.wait_for_event("listening", 5s);
    ASSERT_TRUE(http);
    const std::string url = (*http)["address"];
    ASSERT_EQ(url.rfind("http://", 0), 0u);
    ASSERT_EQ(children_of(server.pid()).size(), 3u);

    ChildProcess clients({LIFELINE_BINARY, "connect", address, "--count", "60", "--reconnect", "--backoff-initial",
                          "50ms", "--backoff-max", "200ms", "--heartbeat", "200ms", "--timeout", "1s", "--no-stdin"});
    std::set<int> workers_seen;
    for (int hellos = 0; hellos < 60;) {
        auto e = server.wait_for_event("hello", 15s);
        ASSERT_TRUE(e) << "only " << hellos << " hellos";
        ASSERT_TRUE(e->contains("worker"));
        workers_seen.insert((*e)["worker"].get<int>());
        ++hellos;
    }
    EXPECT_GE(workers_seen.size(), 2u) << "SO_REUSEPORT spreads connections over the workers";
    EXPECT_TRUE(eventually([&] { return metric(url, "lifeline_connections_open") == 60; }, 10s));

    // A worker dies: the supervisor says so, starts another, and the clients
    // it held reconnect to the survivors or the new worker.
    const pid_t victim = children_of(server.pid()).front();
    ::kill(victim, SIGKILL);
    auto restarted = server.wait_for(
        [](const Json& j) {
            return j.value("event", "") == "error" && j.value("message", "").find("restarting") != std::string::npos;
        },
        10s);
    ASSERT_TRUE(restarted);
    EXPECT_TRUE(eventually([&] { return children_of(server.pid()).size() == 3; }, 10s));
    EXPECT_TRUE(eventually([&] { return metric(url, "lifeline_connections_open") == 60; }, 20s));

    clients.signal(SIGTERM);
    EXPECT_EQ(clients.wait_exit(10s), 0);
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(10s), 0);
}

TEST(ServeWorkers, WorkersDieWithTheSupervisor) {
    ChildProcess server({LIFELINE_BINARY, "serve", "--workers", "2", "--listen", "127.0.0.1:0"});
    ASSERT_TRUE(server.wait_for_event("listening", 15s));
    const std::vector<pid_t> workers = children_of(server.pid());
    ASSERT_EQ(workers.size(), 2u);
    server.signal(SIGKILL);  // No chance to stop them itself.
    server.wait_exit(5s);
    for (pid_t w : workers) {
        EXPECT_TRUE(eventually([w] { return ::kill(w, 0) != 0; }, 10s)) << "worker " << w << " outlived its supervisor";
    }
}

long voluntary_switches(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(line.find(':') + 1));
    }
    return -1;
}

// Worker exits wake the supervisor through pidfds: an idle supervisor does
// not poll (it used to wake 10 times a second, ~0.6 ms of CPU a second), and
// a killed worker is still noticed at once.
TEST(ServeWorkers, AnIdleSupervisorSleepsAndStillNoticesAWorkerExit) {
    ChildProcess server({LIFELINE_BINARY, "serve", "--workers", "2", "--listen", "127.0.0.1:0"}, "exec 2>/dev/null;");
    ASSERT_TRUE(server.wait_for_event("listening", 15s));
    const long before = voluntary_switches(server.pid());
    std::this_thread::sleep_for(1500ms);  // The window measured, not a wait for anything.
    const long after = voluntary_switches(server.pid());
    ASSERT_GE(before, 0);
    EXPECT_LE(after - before, 3) << "the supervisor woke while nothing happened";
    ::kill(children_of(server.pid()).front(), SIGKILL);
    const auto restarted = server.wait_for(
        [](const Json& j) {
            return j.value("event", "") == "error" && j.value("message", "").find("restarting") != std::string::npos;
        },
        10s);
    EXPECT_TRUE(restarted) << "the killed worker went unnoticed";
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(10s), 0);
}

TEST(ServeWorkers, WorkerFlagsAreValidated) {
    ChildProcess bad({LIFELINE_BINARY, "serve", "--workers", "0"}, "exec 2>&1;");
    EXPECT_NE(bad.wait_exit(10s), 0);
}

// Workers inherit the I/O backend, and the supervisor stops them cleanly.
TEST(ServeWorkers, WorkersRunTheChosenBackend) {
    if (!LIFELINE_HAVE_URING) GTEST_SKIP() << "built without liburing (-DLIFELINE_WITH_URING=OFF): no uring back-end";
    ChildProcess server({LIFELINE_BINARY, "serve", "--workers", "2", "--listen", "127.0.0.1:0", "--io", "uring"},
                        "exec 2>/dev/null;");
    ASSERT_TRUE(server.wait_for_event("listening", 15s));
    const std::vector<pid_t> workers = children_of(server.pid());
    ASSERT_EQ(workers.size(), 2u);
    for (pid_t w : workers) {
        std::ifstream cmdline("/proc/" + std::to_string(w) + "/cmdline");
        const std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
        EXPECT_NE(args.find("--io=uring"), std::string::npos) << "worker " << w << " runs without --io uring";
    }
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(10s), 0);
}

}  // namespace
}  // namespace lifeline
