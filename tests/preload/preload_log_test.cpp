// liblifeline_preload.so in a real (uninstrumented C) program on loopback:
// tests/preload/programs/preload_probe.c connects, accepts and listens over
// IPv4 and IPv6, sets its own TCP_KEEPIDLE on one socket, hits a refused
// port, and opens UDP and Unix sockets. The log must hold one JSON line per
// TCP socket and none for the others; the policy must be in force on the
// accepted ends; the program's own choice and errno must survive.
// No root needed: everything is on loopback.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/netns.hpp"

namespace lifeline {
namespace {

using lifeline::testing::run_command;
using Json = nlohmann::json;

struct ProbeRun {
    std::string output;
    std::vector<Json> socket_lines;  // connect/accept/listen lines.
    std::vector<Json> other_lines;   // start, setsockopt.
};

std::string temp_log(const std::string& name) {
    const std::string path = ::testing::TempDir() + "preload_" + name + "_" + std::to_string(::getpid()) + ".log";
    std::remove(path.c_str());
    return path;
}

ProbeRun run_probe(const std::string& command_prefix, const std::string& log) {
    ProbeRun r;
    const auto result = run_command(command_prefix + " " + PRELOAD_PROBE);
    r.output = result.output;
    EXPECT_EQ(result.status, 0) << result.output;
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) {
        Json j = Json::parse(line, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
        if (j.is_discarded()) continue;
        const std::string event = j.value("event", "");
        if (event == "connect" || event == "accept" || event == "listen")
            r.socket_lines.push_back(j);
        else
            r.other_lines.push_back(j);
    }
    return r;
}

// The probe's "NAME values..." line, or empty.
std::string probe_line(const ProbeRun& r, const std::string& name) {
    std::istringstream lines(r.output);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind(name + " ", 0) == 0) return line.substr(name.size() + 1);
    return "";
}

TEST(PreloadLog, OneLinePerTcpSocketAndTheProgramsOwnChoiceAndErrnoSurvive) {
    const std::string log = temp_log("direct");
    // As documented: no lifeline binary, only the library and the variables.
    const ProbeRun r = run_probe(std::string("env LD_PRELOAD=") + PRELOAD_LIBRARY +
                                     " LIFELINE_KEEPALIVE=3s:1s:2 LIFELINE_USER_TIMEOUT=4s LIFELINE_LOG=" + log,
                                 log);
    const int tcp_sockets = std::stoi(probe_line(r, "tcp-sockets"));
    EXPECT_EQ(static_cast<int>(r.socket_lines.size()), tcp_sockets) << r.output;
    std::set<std::string> seen;
    for (const Json& j : r.socket_lines) {
        ASSERT_TRUE(j.contains("fd") && j.contains("family") && j.contains("action")) << j.dump();
        const std::string family = j["family"];
        EXPECT_TRUE(family == "ipv4" || family == "ipv6") << j.dump();
        seen.insert(j["event"].get<std::string>() + "/" + family + "/" + j["action"].get<std::string>());
    }
    for (const char* expected :
         {"listen/ipv4/applied", "connect/ipv4/applied", "accept/ipv4/applied", "connect/ipv4/skipped"})
        EXPECT_EQ(seen.count(expected), 1u) << expected << " missing; log lines: " << r.socket_lines.size();
    if (r.output.find("no-ipv6") == std::string::npos) {
        EXPECT_EQ(seen.count("accept/ipv6/applied"), 1u);
    }
    // The accepted ends carry the policy (from the listener and at accept).
    EXPECT_EQ(probe_line(r, "accepted-keepalive").substr(5), "3 1 2 4000") << r.output;
    // TCP_KEEPIDLE=77 set before connect stays; the skip says why.
    EXPECT_EQ(probe_line(r, "own-idle"), "77");
    // connect's ECONNREFUSED reaches the program.
    EXPECT_EQ(probe_line(r, "refused"), "-1 " + std::to_string(ECONNREFUSED));
    ASSERT_FALSE(r.other_lines.empty());
    EXPECT_EQ(r.other_lines.front().value("event", ""), "start");
}

TEST(PreloadLog, DetectWithinFromTheEnvironment) {
    const std::string log = temp_log("detect");
    const ProbeRun r = run_probe(
        std::string("env LD_PRELOAD=") + PRELOAD_LIBRARY + " LIFELINE_DETECT_WITHIN=10s LIFELINE_LOG=" + log, log);
    ASSERT_FALSE(r.socket_lines.empty());
    for (const Json& j : r.socket_lines) {
        if (j["action"] != "applied") continue;
        const Json& k = j["in_force"];
        EXPECT_LE(k["idle_s"].get<int>() + k["interval_s"].get<int>() * k["count"].get<int>(), 10) << j.dump();
        EXPECT_EQ(k["user_timeout_ms"].get<int>(), 10000) << j.dump();
    }
}

TEST(PreloadLog, ThroughLifelineRunWithOverrideThePolicyWins) {
    const std::string log = temp_log("run");
    const ProbeRun r =
        run_probe(std::string(LIFELINE_BINARY) + " run --keepalive 5s:2s:2 --override --log " + log + " --", log);
    EXPECT_EQ(probe_line(r, "accepted-keepalive").substr(5), "5 2 2 9000") << r.output;
    // With --override the probe's own TCP_KEEPIDLE=77 is applied over at connect.
    EXPECT_EQ(probe_line(r, "own-idle"), "5");
    EXPECT_EQ(static_cast<int>(r.socket_lines.size()), std::stoi(probe_line(r, "tcp-sockets")));
}

TEST(PreloadLog, ABadVariableIsLoggedAndTheProgramRunsUntouched) {
    const std::string log = temp_log("bad");
    const ProbeRun r = run_probe(
        std::string("env LD_PRELOAD=") + PRELOAD_LIBRARY + " LIFELINE_KEEPALIVE=soon LIFELINE_LOG=" + log, log);
    EXPECT_TRUE(r.socket_lines.empty());
    ASSERT_EQ(r.other_lines.size(), 1u);
    EXPECT_EQ(r.other_lines[0].value("action", ""), "error");
    EXPECT_NE(r.other_lines[0].value("error", "").find("LIFELINE_KEEPALIVE"), std::string::npos);
    EXPECT_NE(probe_line(r, "own-idle"), "");
}

}  // namespace
}  // namespace lifeline
