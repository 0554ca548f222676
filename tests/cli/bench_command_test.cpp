// Correctness at scale, at a size CI affords: 20,000 framed connections from
// `lifeline bench` (two generator processes) to `lifeline serve --workers 2`
// (one process may hold at most 20,000 descriptors), 10 % going
// application-silent at once. Every silent one must be closed by the
// server within its budget + tolerance, and none of the others. Loopback
// only, spread over source addresses 127.0.0.2-254. Release binaries: under
// ASan two processes could not keep 18,000 heartbeats a second on 2 cores.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "support/bounds.hpp"
#include "support/child_process.hpp"

namespace lifeline {
namespace {

using namespace std::chrono_literals;
using lifeline::testing::ChildProcess;
using Json = nlohmann::json;

constexpr int kConnections = 20'000;
constexpr double kBudgetMs = 3000;
// The server's wheel ticks every 10 ms; CI machines are noisy. The measured
// figure (docs/BENCHMARKS.md) is much tighter than this bound.
constexpr double kToleranceMs = lifeline::testing::kSchedulingSlackMs;

TEST(Bench, MassFailureIsDetectedWithinBudgetAndNobodyElseIsClosed) {
    ChildProcess server({LIFELINE_RELEASE_BINARY, "serve", "--workers", "2", "--listen", "127.0.0.1:0", "--heartbeat",
                         "1s", "--timeout", "3s", "--max-timeout", "3s"});
    const auto listening = server.wait_for_event("listening", 10s);
    ASSERT_TRUE(listening);
    const std::string address = (*listening)["address"];
    const std::string out =
        (std::filesystem::temp_directory_path() / ("bench-" + std::to_string(::getpid()) + ".json")).string();
    ChildProcess bench({LIFELINE_RELEASE_BINARY,
                        "bench",
                        address,
                        "-n",
                        std::to_string(kConnections),
                        "--processes",
                        "2",
                        "--ramp",
                        "6000",
                        "--heartbeat",
                        "1s",
                        "--timeout",
                        "3s",
                        "--silence",
                        "0.1",
                        "--silence-after",
                        "2s",
                        "--hold",
                        "9s",
                        "--json"},
                       "", out);
    // The server's stdout is a pipe: keep draining it while the bench runs.
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    int status = -1;
    while (std::chrono::steady_clock::now() < deadline && (status = bench.wait_exit(100ms)) < 0) server.next_event(1ms);
    ASSERT_EQ(status, 0);
    std::ifstream in(out);
    const Json r = Json::parse(in, nullptr, false);
    ASSERT_TRUE(r.is_object());
    EXPECT_EQ(r["connected"], kConnections) << r.dump();
    EXPECT_EQ(r["connect_failures"], 0);
    EXPECT_EQ(r["silenced"], kConnections / 10);
    EXPECT_EQ(r["detected"], kConnections / 10) << "every silent connection is closed by the server";
    EXPECT_EQ(r["false_closes"], 0) << "no live connection is closed";
    const double max_ms = r["detection"]["p100"]["after_last_send_ms"];
    EXPECT_GE(max_ms, kBudgetMs - 1) << "closed before its budget ran out";
    EXPECT_LE(max_ms, kBudgetMs + kToleranceMs);
    // 90 % keep pinging once a second after the silence; all of them before it.
    EXPECT_GT(r["round_trips_per_second"].get<double>(), kConnections * 0.85) << "heartbeats kept flowing";
    std::printf("bench result: %s\n", r.dump().c_str());
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(10s), 0);
    std::filesystem::remove(out);
}

// --reconnect: the server dies and comes back; every connection returns with
// the client's jittered backoff and is counted once as dropped, once as back.
TEST(Bench, ReconnectStormIsCountedOnceEach) {
    constexpr int kCount = 300;
    auto server = std::make_unique<ChildProcess>(
        std::vector<std::string>{LIFELINE_RELEASE_BINARY, "serve", "--listen", "127.0.0.1:0", "--heartbeat", "1s"});
    const auto listening = server->wait_for_event("listening", 10s);
    ASSERT_TRUE(listening);
    const std::string address = (*listening)["address"];
    const std::string out =
        (std::filesystem::temp_directory_path() / ("storm-" + std::to_string(::getpid()) + ".json")).string();
    ChildProcess bench({LIFELINE_RELEASE_BINARY, "bench", address, "-n", std::to_string(kCount), "--ramp", "3000",
                        "--heartbeat", "1s", "--timeout", "3s", "--hold", "8s", "--reconnect", "--json"},
                       "", out);
    for (int i = 0; i < kCount; ++i) ASSERT_TRUE(server->wait_for_event("hello", 10s)) << i << " hellos";
    server->signal(SIGKILL);
    server->wait_exit(5s);
    server = std::make_unique<ChildProcess>(
        std::vector<std::string>{LIFELINE_RELEASE_BINARY, "serve", "--listen", address, "--heartbeat", "1s"});
    ASSERT_TRUE(server->wait_for_event("listening", 10s));
    for (int i = 0; i < kCount; ++i) ASSERT_TRUE(server->wait_for_event("hello", 15s)) << i << " came back";
    int status = -1;
    for (auto deadline = std::chrono::steady_clock::now() + 60s;
         std::chrono::steady_clock::now() < deadline && (status = bench.wait_exit(100ms)) < 0;)
        server->next_event(1ms);
    ASSERT_EQ(status, 0);
    std::ifstream in(out);
    const Json r = Json::parse(in, nullptr, false);
    ASSERT_TRUE(r.is_object());
    EXPECT_EQ(r["connected"], kCount);
    EXPECT_EQ(r["drops"], kCount);
    EXPECT_EQ(r["reconnected"], kCount);
    EXPECT_EQ(r["false_closes"], 0);
    EXPECT_GT(r["storm_seconds"].get<double>(), 0.0);
    std::filesystem::remove(out);
}

// Framed clients send a realistic client id by default (16..36 bytes, unique),
// so the server's id map is part of what is measured; --no-id sends none.
// The JSON reports the arrival model and the round trips' latency.
void expect_hello_ids(bool send_id) {
    constexpr int kCount = 200;
    ChildProcess server({LIFELINE_RELEASE_BINARY, "serve", "--listen", "127.0.0.1:0", "--heartbeat", "1s"});
    const auto listening = server.wait_for_event("listening", 10s);
    ASSERT_TRUE(listening);
    const std::string address = (*listening)["address"];
    const std::string out = (std::filesystem::temp_directory_path() /
                             ("ids-" + std::to_string(::getpid()) + (send_id ? "-on" : "-off") + ".json"))
                                .string();
    std::vector<std::string> args = {LIFELINE_RELEASE_BINARY,
                                     "bench",
                                     address,
                                     "-n",
                                     std::to_string(kCount),
                                     "--ramp",
                                     "2000",
                                     "--hold",
                                     "3s",
                                     "--json"};
    if (!send_id) args.push_back("--no-id");
    ChildProcess bench(args, "", out);
    std::set<std::string> ids;
    for (int i = 0; i < kCount; ++i) {
        const auto hello = server.wait_for_event("hello", 20s);
        ASSERT_TRUE(hello) << i << " hellos";
        if (!send_id) {
            EXPECT_EQ(hello->value("id", "").rfind("device-", 0), std::string::npos) << hello->dump();
            continue;
        }
        const std::string id = hello->value("id", "");
        EXPECT_GE(id.size(), 16u) << id;
        EXPECT_LE(id.size(), 36u) << id;
        EXPECT_TRUE(ids.insert(id).second) << "duplicate id " << id;
    }
    int status = -1;
    for (auto deadline = std::chrono::steady_clock::now() + 60s;
         std::chrono::steady_clock::now() < deadline && (status = bench.wait_exit(100ms)) < 0;)
        server.next_event(1ms);
    ASSERT_EQ(status, 0);
    std::ifstream in(out);
    const Json r = Json::parse(in, nullptr, false);
    ASSERT_TRUE(r.is_object());
    EXPECT_EQ(r["connected"], kCount);
    EXPECT_EQ(r["arrivals"], "uniform");
    EXPECT_EQ(r["client_ids"], send_id);
    EXPECT_GT(r["round_trip"]["samples"].get<std::uint64_t>(), 0u) << r.dump();
    EXPECT_LE(r["round_trip"]["p50_ms"].get<double>(), r["round_trip"]["p99_ms"].get<double>());
    EXPECT_LE(r["round_trip"]["p99_ms"].get<double>(), r["round_trip"]["p999_ms"].get<double>());
    std::filesystem::remove(out);
}

TEST(Bench, FramedClientsSendUniqueIdsOfRealisticLength) { expect_hello_ids(true); }

TEST(Bench, NoIdSendsNone) { expect_hello_ids(false); }

}  // namespace
}  // namespace lifeline
