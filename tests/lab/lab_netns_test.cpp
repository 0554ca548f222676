// The network lab end to end: the real release binary builds the namespaces,
// injects every fault against every mechanism, and the measured cells must
// show what the lab claims (docs/TUNING.md has the table).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lab/lab_result.hpp"
#include "lab/topology.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"

namespace lifeline::lab {
namespace {

using testing::ChildProcess;
using Json = nlohmann::json;
using namespace std::chrono_literals;

std::vector<std::string> namespaces_of(pid_t pid) {
    std::vector<std::string> mine;
    const std::string prefix = std::string(LabNetwork::kPrefix) + std::to_string(pid) + "-";
    for (const auto& n : LabNetwork::lab_namespaces()) {
        if (n.rfind(prefix, 0) == 0) mine.push_back(n);
    }
    return mine;
}

std::string temp_dir(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir.string();
}

const Json& cell(const Json& run, const std::string& fault, const std::string& mechanism) {
    for (const Json& c : run["cells"]) {
        if (c["fault"] == fault && c["mechanism"] == mechanism) return c;
    }
    throw std::runtime_error("no cell " + fault + "/" + mechanism);
}

// One run of the whole matrix (about 25 s), so one test: ctest runs each
// TEST in its own process, and the claims below all read the same run.
TEST(Lab, EveryFaultAgainstEveryMechanism) {
    LIFELINE_REQUIRE_NETNS();
    const std::string dir = temp_dir("lifeline-lab-test");
    ChildProcess lab({LIFELINE_RELEASE_BINARY, "lab", "--report", dir, "--color", "never"}, "exec 2>&1;",
                     dir + "/output.txt");
    const int exit_status = lab.wait_exit(180s);
    std::ifstream in(dir + "/lab.json");
    const Json run = in ? Json::parse(in, nullptr, false) : Json();
    ASSERT_TRUE(run.is_object()) << "no lab.json; lab exited " << exit_status << ", see " << dir << "/output.txt";
    EXPECT_EQ(exit_status, 0) << "see " << dir << "/output.txt";

    {
        SCOPED_TRACE("every cell as expected");
        ASSERT_EQ(run["cells"].size(), std::size(kAllFaults) * std::size(kAllMechanisms));
        for (const Json& c : run["cells"]) {
            EXPECT_TRUE(c["as_expected"].get<bool>())
                << c["fault"] << "/" << c["mechanism"] << ": " << c["findings"].dump();
        }
    }
    {
        SCOPED_TRACE("freeze is caught by heartbeats and not by keepalive");
        const Json& hb = cell(run, "freeze", "heartbeat")["server"];
        EXPECT_TRUE(hb["detected"].get<bool>());
        EXPECT_EQ(hb["reason"], "heartbeat_timeout");
        EXPECT_LE(hb["latency_ms"].get<double>(), 1000 + 100);
        EXPECT_FALSE(cell(run, "freeze", "keepalive")["server"]["detected"].get<bool>());
        EXPECT_FALSE(cell(run, "freeze", "keepalive+user_timeout")["server"]["detected"].get<bool>());
    }
    {
        SCOPED_TRACE("transfer_cut is caught by the user timeout, not by keepalive alone");
        const Json& ut = cell(run, "transfer_cut", "keepalive+user_timeout")["server"];
        EXPECT_TRUE(ut["detected"].get<bool>());
        EXPECT_EQ(ut["reason"], "user_timeout");
        EXPECT_LE(ut["latency_ms"].get<double>(), 4000 + 1000);
        EXPECT_FALSE(cell(run, "transfer_cut", "keepalive")["server"]["detected"].get<bool>());
    }
    {
        SCOPED_TRACE("cable_pull is caught by all but none");
        EXPECT_FALSE(cell(run, "cable_pull", "none")["server"]["detected"].get<bool>());
        const std::map<std::string, std::pair<std::string, double>> want = {
            {"keepalive", {"keepalive_timeout", 5000}},
            {"keepalive+user_timeout", {"keepalive_timeout", 5000}},
            {"heartbeat", {"heartbeat_timeout", 1100}},
            {"all", {"heartbeat_timeout", 1100}}};
        for (const auto& [mechanism, expected] : want) {
            const Json& s = cell(run, "cable_pull", mechanism)["server"];
            EXPECT_TRUE(s["detected"].get<bool>()) << mechanism;
            EXPECT_EQ(s["reason"], expected.first) << mechanism;
            EXPECT_LE(s["latency_ms"].get<double>(), expected.second) << mechanism;
        }
    }
    {
        SCOPED_TRACE("a NAT that forgets idle flows eats the messages of a connection nothing keeps alive");
        EXPECT_GT(cell(run, "nat_expiry", "none")["lost_bytes"].get<std::uint64_t>(), 0u);
        for (const char* m : {"keepalive", "keepalive+user_timeout", "heartbeat", "all"}) {
            const Json& c = cell(run, "nat_expiry", m);
            EXPECT_EQ(c["lost_bytes"].get<std::uint64_t>(), 0u) << m;
            EXPECT_FALSE(c["server"]["detected"].get<bool>()) << m;
        }
    }
    {
        SCOPED_TRACE("a rebooted server resets the client that sends; an idle raw client never learns");
        EXPECT_FALSE(cell(run, "server_reboot", "none")["client"]["detected"].get<bool>());
        for (const char* m : {"keepalive", "heartbeat"}) {
            const Json& c = cell(run, "server_reboot", m)["client"];
            EXPECT_EQ(c["reason"], "peer_reset") << m;
        }
    }
    {
        SCOPED_TRACE("lost: what a sender handed over that never arrived");
        EXPECT_TRUE(cell(run, "cable_pull", "heartbeat")["lost_bytes"].is_null());  // No application data.
        const std::uint64_t none = cell(run, "transfer_cut", "none")["lost_bytes"].get<std::uint64_t>();
        const std::uint64_t heartbeat = cell(run, "transfer_cut", "heartbeat")["lost_bytes"].get<std::uint64_t>();
        EXPECT_GT(heartbeat, 0u);
        EXPECT_GT(none, heartbeat) << "a sender never told keeps handing over data for the whole limit";
    }
    {
        SCOPED_TRACE("keepalive probes are seen on the wire");
        ASSERT_TRUE(run["captured"].get<bool>());
        int probes = 0;
        for (const Json& p : cell(run, "cable_pull", "keepalive")["wire"]) {
            if (p["kind"] == "keepalive_probe" && p["from"] == "server" && p["at_ms"].get<double>() > 0) ++probes;
        }
        EXPECT_GE(probes, 3);  // idle 1 s, then 3 probes 1 s apart before the kernel gives up.
    }
    {
        SCOPED_TRACE("the report is written and nothing is left behind");
        std::ifstream html(dir + "/lab.html");
        std::stringstream text;
        text << html.rdbuf();
        EXPECT_NE(text.str().find("<svg"), std::string::npos);
        std::ifstream output(dir + "/output.txt");
        std::stringstream table;
        table << output.rdbuf();
        EXPECT_NE(table.str().find("transfer_cut"), std::string::npos);
        EXPECT_TRUE(namespaces_of(lab.pid()).empty());
    }
}

// Every cell again over IPv6: addresses, nftables rules, capture and the
// peers named in events are all IPv6.
TEST(Lab, EveryCellWorksOverIpv6) {
    LIFELINE_REQUIRE_NETNS();
    const std::string dir = temp_dir("lifeline-lab-ipv6");
    ChildProcess lab({LIFELINE_RELEASE_BINARY, "lab", "--ipv6", "--json", "--logs", dir + "/logs"}, "",
                     dir + "/out.json");
    const int exit_status = lab.wait_exit(180s);
    std::ifstream in(dir + "/out.json");
    const Json run = in ? Json::parse(in, nullptr, false) : Json();
    ASSERT_TRUE(run.is_object()) << "no JSON; lab exited " << exit_status << ", see " << dir;
    EXPECT_EQ(exit_status, 0) << "see " << dir;
    EXPECT_TRUE(run["config"]["ipv6"].get<bool>());
    ASSERT_EQ(run["cells"].size(), std::size(kAllFaults) * std::size(kAllMechanisms));
    for (const Json& c : run["cells"]) {
        EXPECT_TRUE(c["as_expected"].get<bool>())
            << c["fault"] << "/" << c["mechanism"] << ": " << c["findings"].dump();
    }
    EXPECT_TRUE(run["captured"].get<bool>());
    EXPECT_FALSE(cell(run, "cable_pull", "keepalive")["wire"].empty()) << "the capture parses IPv6";
    std::ifstream events(dir + "/logs/cable_pull.heartbeat.server.events.jsonl");
    std::stringstream text;
    text << events.rdbuf();
    EXPECT_NE(text.str().find("\"peer\":\"[2001:2::2]:"), std::string::npos) << text.str();
    EXPECT_TRUE(namespaces_of(lab.pid()).empty());
}

TEST(LabTeardown, AnInterruptedLabLeavesNoNamespaces) {
    LIFELINE_REQUIRE_NETNS();
    const std::string dir = temp_dir("lifeline-lab-interrupt");
    ChildProcess lab({LIFELINE_RELEASE_BINARY, "lab", "--faults", "cable_pull,freeze", "--logs", dir}, "exec 2>&1;");
    ASSERT_TRUE(lab.wait_for_line("faults injected", 60s)) << "the lab never got to its faults";
    EXPECT_FALSE(namespaces_of(lab.pid()).empty());
    lab.signal(SIGINT);
    EXPECT_EQ(lab.wait_exit(30s), 130);
    EXPECT_TRUE(namespaces_of(lab.pid()).empty());
}

// Without root the lab enters an unprivileged user namespace of its own and
// everything still works there. Run as `nobody` through setpriv (we are root).
TEST(Lab, RunsWithoutRootInAUserNamespace) {
    LIFELINE_REQUIRE_NETNS();
    const std::string dir = temp_dir("lifeline-lab-nobody");
    ::chmod(dir.c_str(), 0777);
    // A copy anyone may execute, whatever the permissions of the build tree.
    const std::string binary = dir + "/lifeline";
    std::filesystem::copy_file(LIFELINE_RELEASE_BINARY, binary);
    ::chmod(binary.c_str(), 0755);
    ChildProcess lab({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "lab", "--faults",
                      "cable_pull,freeze", "--mechanisms", "keepalive,heartbeat", "--logs", dir + "/logs", "--json"},
                     "", dir + "/out.json");
    ASSERT_EQ(lab.wait_exit(90s), 0) << "see " << dir;
    std::ifstream in(dir + "/out.json");
    const Json run = Json::parse(in, nullptr, false);
    ASSERT_TRUE(run.is_object());
    EXPECT_TRUE(run["captured"].get<bool>()) << "packet capture works in the user namespace too";
    EXPECT_EQ(cell(run, "freeze", "heartbeat")["server"]["reason"], "heartbeat_timeout");
    EXPECT_EQ(cell(run, "cable_pull", "keepalive")["server"]["reason"], "keepalive_timeout");
    // Its namespaces were never in ours: nothing to leave behind here.
    EXPECT_TRUE(namespaces_of(lab.pid()).empty());
}

TEST(LabTeardown, AStaleLabIsRemovedAtTheNextStart) {
    LIFELINE_REQUIRE_NETNS();
    // A pid above pid_max cannot be alive: this is a lab that crashed.
    const std::string stale = std::string(LabNetwork::kPrefix) + "99999999-sw";
    testing::must("ip netns add " + stale);
    EXPECT_GE(LabNetwork::remove_stale_labs(), 1);
    const auto left = LabNetwork::lab_namespaces();
    EXPECT_EQ(std::find(left.begin(), left.end(), stale), left.end());
}

}  // namespace
}  // namespace lifeline::lab
