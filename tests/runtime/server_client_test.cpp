// End to end on loopback: the real `lifeline serve` and `lifeline connect`.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "support/bounds.hpp"
#include "support/child_process.hpp"
#include "support/serve_io.hpp"

namespace lifeline {
namespace {

using namespace std::chrono_literals;
using lifeline::testing::ChildProcess;
using Json = nlohmann::json;

struct Server {
    std::unique_ptr<ChildProcess> process;
    std::string address;
};

Server start_server(std::vector<std::string> args, const std::string& listen = "127.0.0.1:0") {
    std::vector<std::string> argv = {LIFELINE_BINARY, "serve", "--listen", listen};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& flag : lifeline::testing::serve_io_flags()) argv.push_back(flag);
    Server s{std::make_unique<ChildProcess>(argv), ""};
    auto listening = s.process->wait_for_event("listening", 10s);
    if (listening) s.address = (*listening)["address"];
    return s;
}

std::unique_ptr<ChildProcess> start_client(const std::string& address, std::vector<std::string> args) {
    std::vector<std::string> argv = {LIFELINE_BINARY, "connect", address, "--no-stdin"};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<ChildProcess>(argv);
}

auto is(const std::string& kind, const std::string& id) {
    return [kind, id](const Json& j) { return j.value("event", "") == kind && j.value("id", "") == id; };
}

TEST(ServerClient, HeartbeatsFlowAndRttIsReported) {
    Server server = start_server({"--timeout", "2s"});
    ASSERT_FALSE(server.address.empty());
    auto client = start_client(server.address, {"--id", "alice", "--heartbeat", "100ms", "--timeout", "1s"});
    auto hello = server.process->wait_for(is("hello", "alice"), 10s);
    ASSERT_TRUE(hello);
    EXPECT_EQ((*hello)["interval_ms"], 100.0);  // Granted as asked.
    EXPECT_EQ((*hello)["timeout_ms"], 1000.0);
    int samples = 0;
    for (int i = 0; i < 5; ++i) {
        auto rtt = client->wait_for_event("rtt", 5s);
        ASSERT_TRUE(rtt) << "heartbeat " << i;
        EXPECT_GT((*rtt)["rtt_ms"].get<double>(), 0.0);
        EXPECT_LT((*rtt)["rtt_ms"].get<double>(), 1000.0);
        ++samples;
    }
    EXPECT_EQ(samples, 5);
    for (const auto& e : client->events()) EXPECT_NE(e.value("event", ""), "dead") << e.dump();
}

// The server itself is stopped for twice its timeout while a more patient
// client keeps pinging: on waking it must forgive the silence it caused and
// the PINGs that piled up meanwhile (not too_many_pings), convicting no one.
TEST(ServerClient, AStalledServerConvictsNoLiveClient) {
    Server server = start_server(
        {"--heartbeat", "100ms", "--timeout", "500ms", "--max-timeout", "500ms", "--min-interval", "100ms"});
    ASSERT_FALSE(server.address.empty());
    auto client = start_client(server.address, {"--id", "patient", "--heartbeat", "100ms", "--timeout", "5s"});
    ASSERT_TRUE(server.process->wait_for(is("hello", "patient"), 10s));
    ASSERT_TRUE(client->wait_for_event("rtt", 5s));
    server.process->signal(SIGSTOP);
    // The stall's length is the fault being injected, not a wait for an
    // event: ten PINGs queue up in the stopped server's receive buffer, and
    // the client's own timeout (5 s) outlasts the stall.
    std::this_thread::sleep_for(1s);
    server.process->signal(SIGCONT);
    ASSERT_TRUE(server.process->wait_for_event("stall", 5s));
    // After the stall, heartbeats flow again: five fresh round trips.
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->wait_for_event("rtt", 5s)) << "round trip " << i;
    for (const auto& e : server.process->events()) {
        EXPECT_NE(e.value("event", ""), "closed") << e.dump();
        EXPECT_NE(e.value("event", ""), "error") << e.dump();
    }
    for (const auto& e : client->events()) EXPECT_NE(e.value("event", ""), "closed") << e.dump();
}

TEST(ServerClient, StoppedClientIsDeclaredDeadWithinTimeoutPlus50ms) {
    Server server = start_server({});
    auto client = start_client(server.address, {"--id", "frozen", "--heartbeat", "100ms", "--timeout", "500ms"});
    ASSERT_TRUE(server.process->wait_for(is("hello", "frozen"), 10s));
    ASSERT_TRUE(client->wait_for_event("rtt", 5s));
    client->signal(SIGSTOP);
    const auto stopped = std::chrono::steady_clock::now();
    auto dead = server.process->wait_for(is("dead", "frozen"), 5s);
    const auto noticed = std::chrono::steady_clock::now() - stopped;
    ASSERT_TRUE(dead);
    EXPECT_EQ((*dead)["reason"], "heartbeat_timeout");
    EXPECT_EQ((*dead)["budget_ms"], 500.0);
    // Silence is measured from the last byte that arrived, by the server's clock.
    EXPECT_GE((*dead)["silence_ms"].get<double>(), 500.0);
    EXPECT_LE((*dead)["silence_ms"].get<double>(), 500.0 + lifeline::testing::kSchedulingSlackMs);
    // From SIGSTOP, with the last heartbeat's head start.
    EXPECT_LE(noticed, 500ms + 200ms + lifeline::testing::kSchedulingSlack);
    auto closed = server.process->wait_for(is("closed", "frozen"), 2s);
    ASSERT_TRUE(closed);
    EXPECT_EQ((*closed)["reason"], "heartbeat_timeout");
    client->signal(SIGCONT);
    // On waking, the client's stall guard forgives its own pause, then it reads
    // the server's CLOSE: it ends as closed by the server, not with a false verdict.
    auto client_closed = client->wait_for_event("closed", 5s);
    ASSERT_TRUE(client_closed);
    EXPECT_EQ((*client_closed)["reason"], "peer_closed");
}

TEST(ServerClient, KilledClientIsPeerClosedOrReset) {
    Server server = start_server({});
    auto client = start_client(server.address, {"--id", "killed", "--heartbeat", "100ms", "--timeout", "500ms"});
    ASSERT_TRUE(server.process->wait_for(is("hello", "killed"), 10s));
    client->signal(SIGKILL);
    auto closed = server.process->wait_for(is("closed", "killed"), 5s);
    ASSERT_TRUE(closed);
    const std::string reason = (*closed)["reason"];
    EXPECT_TRUE(reason == "peer_closed" || reason == "peer_reset") << reason;
    for (const auto& e : server.process->events()) EXPECT_NE(e.value("event", ""), "dead") << e.dump();
}

TEST(ServerClient, ClientNoticesDeadServerAndReconnects) {
    Server first = start_server({});
    const std::string address = first.address;
    auto client = start_client(address, {"--id", "phoenix", "--heartbeat", "100ms", "--timeout", "500ms", "--reconnect",
                                         "--backoff-initial", "50ms", "--backoff-max", "200ms"});
    ASSERT_TRUE(client->wait_for_event("hello", 10s));
    // A stopped server is silent: the client must notice by heartbeat.
    first.process->signal(SIGSTOP);
    auto dead = client->wait_for_event("dead", 5s);
    ASSERT_TRUE(dead);
    EXPECT_EQ((*dead)["reason"], "heartbeat_timeout");
    EXPECT_LE((*dead)["silence_ms"].get<double>(), 500.0 + lifeline::testing::kSchedulingSlackMs);
    first.process->signal(SIGKILL);
    first.process->wait_exit(5s);
    // A new server on the same address: the client comes back on its own.
    Server second = start_server({}, address);
    ASSERT_EQ(second.address, address);
    auto hello = client->wait_for_event("hello", 10s);
    ASSERT_TRUE(hello);
    EXPECT_EQ((*hello)["id"], "phoenix");
    // It presented the resume token its first WELCOME issued (a new server
    // does not know it, and admits the free id anyway).
    EXPECT_EQ(hello->value("message", "").rfind("resumed", 0), 0u) << hello->dump();
    ASSERT_TRUE(second.process->wait_for(is("hello", "phoenix"), 5s));
}

TEST(ServerClient, SameIdWithoutTheResumeTokenIsRefusedAndTheHolderStays) {
    Server server = start_server({});
    auto holder = start_client(server.address, {"--id", "dup", "--heartbeat", "100ms", "--timeout", "500ms"});
    ASSERT_TRUE(server.process->wait_for(is("hello", "dup"), 10s));
    // Takeover needs the holder's resume token (docs/PROTOCOL.md): a second
    // client with the same id is refused, and the holder is not disturbed.
    auto intruder = start_client(server.address, {"--id", "dup", "--heartbeat", "100ms", "--timeout", "500ms"});
    auto refused = server.process->wait_for(is("closed", "dup"), 10s);
    ASSERT_TRUE(refused);
    EXPECT_EQ((*refused)["reason"], "rejected");
    auto intruder_error = intruder->wait_for_event("closed", 5s);
    ASSERT_TRUE(intruder_error);
    EXPECT_EQ((*intruder_error)["reason"], "rejected");
    // Twenty heartbeats later the holder is still served.
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(holder->wait_for_event("rtt", 5s));
    for (const Json& e : holder->events()) EXPECT_NE(e.value("event", ""), "closed") << e.dump();
}

TEST(ServerClient, PresenceSaysWhoIsOnlineAndWhyTheOthersLeft) {
    Server server = start_server({"--http", "127.0.0.1:0"});
    auto http_listening = server.process->wait_for_event("listening", 5s);
    ASSERT_TRUE(http_listening);
    const std::string url = (*http_listening)["address"];
    httplib::Client http("127.0.0.1", std::stoi(url.substr(url.rfind(':') + 1)));
    auto stays = start_client(server.address, {"--id", "p-stays", "--heartbeat", "100ms", "--timeout", "500ms"});
    auto dies = start_client(server.address, {"--id", "p-dies", "--heartbeat", "100ms", "--timeout", "500ms"});
    auto hello = server.process->seen_or_wait_for(is("hello", "p-dies"), 10s);
    ASSERT_TRUE(hello);
    EXPECT_EQ((*hello)["epoch"], 1);
    ASSERT_TRUE(server.process->seen_or_wait_for(is("hello", "p-stays"), 10s));
    auto online = http.Get("/presence/p-dies");
    ASSERT_TRUE(online);
    EXPECT_EQ(online->status, 200);
    EXPECT_EQ(Json::parse(online->body)["online"], true) << online->body;
    dies->signal(SIGSTOP);  // Silent: the server's heartbeat timeout decides.
    auto offline = server.process->seen_or_wait_for(is("offline", "p-dies"), 10s);
    ASSERT_TRUE(offline);
    EXPECT_EQ((*offline)["reason"], "heartbeat_timeout");
    EXPECT_EQ((*offline)["epoch"], 1);
    auto gone = http.Get("/presence/p-dies");
    ASSERT_TRUE(gone);
    const Json record = Json::parse(gone->body);
    EXPECT_EQ(record["online"], false) << gone->body;
    EXPECT_EQ(record["last_reason"], "heartbeat_timeout") << gone->body;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    EXPECT_EQ(record["gateway"], std::string(host) + ":" + server.address.substr(server.address.rfind(':') + 1))
        << "the default gateway name is HOSTNAME:PORT";
    auto all = http.Get("/presence");
    ASSERT_TRUE(all);
    const Json list = Json::parse(all->body);
    ASSERT_EQ(list.size(), 2u) << all->body;
    EXPECT_EQ(list[0]["id"], "p-stays");  // Online first.
    auto unknown = http.Get("/presence/never-seen");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404);
    EXPECT_EQ(Json::parse(unknown->body)["known"], false);
    dies->signal(SIGKILL);
}

TEST(ServerClient, NoPresenceKeepsNoRecordsAndSendsNoOfflineEvents) {
    Server server = start_server({"--http", "127.0.0.1:0", "--no-presence"});
    auto http_listening = server.process->wait_for_event("listening", 5s);
    ASSERT_TRUE(http_listening);
    const std::string url = (*http_listening)["address"];
    httplib::Client http("127.0.0.1", std::stoi(url.substr(url.rfind(':') + 1)));
    {
        auto client = start_client(server.address, {"--id", "np-1", "--heartbeat", "100ms", "--timeout", "500ms"});
        ASSERT_TRUE(server.process->seen_or_wait_for(is("hello", "np-1"), 10s));
        auto res = http.Get("/presence/np-1");
        ASSERT_TRUE(res);
        EXPECT_EQ(res->status, 404);
        client->signal(SIGKILL);
        ASSERT_TRUE(server.process->seen_or_wait_for(is("closed", "np-1"), 10s));
    }
    // An offline event for np-1 would come right after its closed, so before
    // this later hello: every event up to it has been read.
    auto later = start_client(server.address, {"--id", "np-2", "--heartbeat", "100ms", "--timeout", "500ms"});
    ASSERT_TRUE(server.process->seen_or_wait_for(is("hello", "np-2"), 10s));
    for (const Json& e : server.process->events()) EXPECT_NE(e.value("event", ""), "offline") << e.dump();
}

// Prometheus text format: "# HELP", "# TYPE", or `name{labels} value`.
std::map<std::string, double> parse_prometheus(const std::string& text) {
    static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) ([-+0-9.eE]+|\+Inf|NaN)$)");
    std::map<std::string, double> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = text.find('\n', pos);
        const std::string line = text.substr(pos, end - pos);
        pos = end == std::string::npos ? text.size() : end + 1;
        if (line.empty() || line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
        std::smatch m;
        EXPECT_TRUE(std::regex_match(line, m, sample)) << "not Prometheus text: " << line;
        if (!m.empty()) out[m[1]] = std::stod(m[3]);
    }
    return out;
}

TEST(ServerClient, MetricsParseAndMatchTheEvents) {
    Server server = start_server({"--http", "127.0.0.1:0"});
    ASSERT_FALSE(server.address.empty());
    // A second `listening` event names the HTTP endpoint with its port.
    auto http_listening = server.process->wait_for_event("listening", 5s);
    ASSERT_TRUE(http_listening);
    const std::string url = (*http_listening)["address"];
    ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
    const int http_port = std::stoi(url.substr(url.rfind(':') + 1));
    const std::string http = url;
    {
        auto a = start_client(server.address, {"--id", "m1", "--heartbeat", "100ms", "--timeout", "500ms"});
        auto b = start_client(server.address, {"--id", "m2", "--heartbeat", "100ms", "--timeout", "500ms"});
        ASSERT_TRUE(server.process->seen_or_wait_for(is("hello", "m1"), 10s));
        ASSERT_TRUE(server.process->seen_or_wait_for(is("hello", "m2"), 10s));
        ASSERT_TRUE(a->wait_for_event("rtt", 5s));
        a->signal(SIGKILL);
        b->signal(SIGSTOP);
        ASSERT_TRUE(server.process->seen_or_wait_for(is("closed", "m1"), 5s));
        ASSERT_TRUE(server.process->seen_or_wait_for(is("closed", "m2"), 5s));
    }
    httplib::Client scrape("127.0.0.1", http_port);
    auto res = scrape.Get("/metrics");
    ASSERT_TRUE(res) << "no answer from " << http;
    EXPECT_EQ(res->status, 200);
    const auto metrics = parse_prometheus(res->body);
    std::map<std::string, int> closed_by_reason;
    int connects = 0;
    for (const auto& e : server.process->events()) {
        if (e["event"] == "connect") ++connects;
        if (e["event"] == "closed") ++closed_by_reason[e["reason"]];
    }
    EXPECT_EQ(metrics.at("lifeline_connections_accepted_total"), connects);
    EXPECT_EQ(metrics.at("lifeline_connections_open"), 0);
    for (const auto& [reason, count] : closed_by_reason) {
        EXPECT_EQ(metrics.at("lifeline_connections_closed_total{reason=\"" + reason + "\"}"), count) << reason;
    }
    EXPECT_EQ(metrics.at("lifeline_connections_closed_total{reason=\"heartbeat_timeout\"}"), 1);
    EXPECT_GE(metrics.at("lifeline_heartbeats_received_total"), 1);
    EXPECT_EQ(metrics.at("lifeline_detection_latency_seconds_count"), 1);
    auto conns = scrape.Get("/connections");
    ASSERT_TRUE(conns);
    EXPECT_EQ(Json::parse(conns->body), Json::array());
}

TEST(ServerClient, SigtermClosesPeersAndExitsAfterTheFlush) {
    Server server = start_server({});
    auto client = start_client(server.address, {"--id", "bye", "--heartbeat", "100ms", "--timeout", "500ms"});
    ASSERT_TRUE(server.process->wait_for(is("hello", "bye"), 10s));
    const auto start = std::chrono::steady_clock::now();
    server.process->signal(SIGTERM);
    // The flush takes at most 1.5 s (Server::run()), then everything closes.
    EXPECT_EQ(server.process->wait_exit(1500ms + lifeline::testing::kSchedulingSlack), 0);
    EXPECT_LE(std::chrono::steady_clock::now() - start, 1500ms + lifeline::testing::kSchedulingSlack);
    auto closed = client->wait_for_event("closed", 5s);
    ASSERT_TRUE(closed);
    EXPECT_EQ((*closed)["reason"], "peer_closed");
    EXPECT_NE((*closed)["message"].get<std::string>().find("CLOSE 1"), std::string::npos) << closed->dump();
}

TEST(ServerClient, DetectWithinIsAPromiseClientsCannotNegotiateAway) {
    Server server = start_server({"--detect-within", "900ms"});
    // The client asks for the defaults, 1 s / 3 s: longer than the server promised.
    auto client = start_client(server.address, {"--id", "greedy"});
    auto hello = server.process->wait_for(is("hello", "greedy"), 10s);
    ASSERT_TRUE(hello);
    EXPECT_LE((*hello)["timeout_ms"].get<double>(), 900.0);
    EXPECT_LE((*hello)["interval_ms"].get<double>(), 450.0);
    auto client_hello = client->wait_for_event("hello", 5s);
    ASSERT_TRUE(client_hello);
    // The promise binds the server's verdict, not the client's patience: the
    // client keeps the 3 s it asked for (docs/PROTOCOL.md, WELCOME) and pings
    // at the granted interval.
    EXPECT_EQ((*client_hello)["timeout_ms"], 3000.0);
    EXPECT_EQ((*client_hello)["interval_ms"], (*hello)["interval_ms"]);
    client->signal(SIGSTOP);
    auto dead = server.process->wait_for(is("dead", "greedy"), 5s);
    ASSERT_TRUE(dead);
    EXPECT_LE((*dead)["silence_ms"].get<double>(), 900.0 + lifeline::testing::kSchedulingSlackMs);
}

TEST(ServerClient, SeveralLoopsShareTheConnections) {
    Server server = start_server({"--threads", "2", "--http", "127.0.0.1:0"});
    auto http_listening = server.process->wait_for_event("listening", 5s);
    ASSERT_TRUE(http_listening);
    const std::string url = (*http_listening)["address"];
    auto clients =
        start_client(server.address, {"--count", "40", "--id", "t", "--heartbeat", "100ms", "--timeout", "500ms"});
    int hellos = 0;
    while (hellos < 40 && server.process->wait_for_event("hello", 10s)) ++hellos;
    ASSERT_EQ(hellos, 40);
    httplib::Client scrape("127.0.0.1", std::stoi(url.substr(url.rfind(':') + 1)));
    auto res = scrape.Get("/connections");
    ASSERT_TRUE(res);
    // Both loops answer; every connection is listed once, with its own keepalive settings.
    const Json conns = Json::parse(res->body);
    ASSERT_EQ(conns.size(), 40u);
    std::set<std::string> ids;
    for (const auto& c : conns) {
        ids.insert(c["id"].get<std::string>());
        EXPECT_EQ(c["keepalive"]["idle_s"], 10);
    }
    EXPECT_EQ(ids.size(), 40u);
    for (const auto& e : server.process->events()) EXPECT_NE(e.value("event", ""), "dead") << e.dump();
}

TEST(ServerClient, RawModeWithPlainTcpClient) {
    Server server = start_server({"--mode", "raw", "--echo", "--idle-timeout", "300ms"});
    const auto colon = server.address.rfind(':');
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(server.address.substr(colon + 1))));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::send(fd, "ping\n", 5, 0), 5);
    char buf[16] = {};
    ASSERT_EQ(::recv(fd, buf, sizeof(buf), 0), 5);  // Echoed.
    EXPECT_EQ(std::string(buf, 5), "ping\n");
    auto closed = server.process->wait_for_event("closed", 5s);
    ASSERT_TRUE(closed);
    EXPECT_EQ((*closed)["reason"], "idle_timeout");
    EXPECT_GE((*closed)["duration_ms"].get<double>(), 300.0);
    ::close(fd);
}

}  // namespace
}  // namespace lifeline
