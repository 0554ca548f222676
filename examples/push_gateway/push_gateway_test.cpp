// examples/push_gateway end to end, in network namespaces the test creates and
// always tears down (tests/support/netns.hpp):
//   host 0  push_gateway (clients on :7000, HTTP on :7080)
//   host 1  197 well-behaved clients in two push_clients processes
//   host 2  u2-00, whose cable is pulled            -> user_timeout
//   host 3  u1-00, SIGSTOPped                       -> heartbeat_timeout
//   host 4  u0-00, which stops reading              -> slow_consumer
//   host 5  the operator (HTTP requests) and the intruders
// 200 clients in 4 rooms of 50. Every well-behaved client must receive every
// message pushed to its room or to it, once; the faulty three must leave their
// rooms with their reason within their budget; a wrong credential is refused
// with CLOSE 1001 and evicts nobody. Every wait is on a line, an HTTP answer
// or a count, bounded. Needs root: skips otherwise, fails instead when CI=true.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "credential.hpp"
#include "support/bounds.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"

namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using lifeline::testing::kSchedulingSlack;
using lifeline::testing::SwitchedNetwork;
using std::chrono::milliseconds;

constexpr int kGatewayHost = 0, kBulkHost = 1, kCableHost = 2, kStopHost = 3, kSlowHost = 4, kOperatorHost = 5;
constexpr int kHosts = 6;
constexpr int kRooms = 4, kPerRoom = 50;
constexpr int kBulkProcesses = 2;
constexpr int kClientPort = 7000, kHttpPort = 7080;
const std::string kKey = "push-gateway-e2e-key";
// The budgets the gateway is started with, and what each fault is judged by.
constexpr auto kHeartbeatTimeout = 6s;  // SIGSTOP: nothing but heartbeats can tell.
constexpr auto kUserTimeout = 3s;       // keepalive 1s:1s:2, user timeout auto = 3 s.
constexpr auto kRtoGranularity = 1s;    // The kernel notices the user timeout at a retransmission.
constexpr auto kSlowGrace = 1s;         // --slow-consumer-after
const std::string kOutputBudget = "65536";
constexpr int kHeavyBody = 8 * 1024;
constexpr int kMaxHeavyPushes = 400;

// The faulty clients, one per room (the fourth room's first member is the intruders' target).
const std::string kSlow = "u0-00", kStopped = "u1-00", kCable = "u2-00", kHolder = "u3-00";

std::string id_of(int room, int n) {
    char id[16];
    std::snprintf(id, sizeof(id), "u%d-%02d", room, n);
    return id;
}
std::string room_of(int room) { return "r" + std::to_string(room); }

std::int64_t now_ms() {
    return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One HTTP request from `ns` (a thread that enters it: setns changes only the
// calling thread's namespace, and this one ends with the request).
struct Answer {
    int status = -1;
    Json body;
};
Answer http_from(const std::string& ns, const std::string& host, const std::string& method, const std::string& path,
                 const std::string& body = "") {
    Answer answer;
    std::thread([&] {
        const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) return;
        ::close(fd);
        httplib::Client client(host, kHttpPort);
        client.set_connection_timeout(5s);
        client.set_read_timeout(15s);
        httplib::Result r = method == "GET" ? client.Get(path) : client.Post(path, body, "text/plain");
        if (!r) return;
        answer.status = r->status;
        answer.body = Json::parse(r->body, nullptr, false);
    }).join();
    return answer;
}

struct TempFiles {
    std::vector<std::string> paths;
    std::string write(const std::string& name, const std::string& text) {
        paths.push_back("/tmp/push-gateway-test-" + std::to_string(::getpid()) + "-" + name);
        std::ofstream(paths.back()) << text;
        return paths.back();
    }
    ~TempFiles() {
        for (const std::string& p : paths) std::remove(p.c_str());
    }
};

class PushGateway : public ::testing::Test {
protected:
    void SetUp() override {
        LIFELINE_REQUIRE_NETNS();
        net_ = std::make_unique<SwitchedNetwork>(kHosts);
        // The gateway's send buffers may not autotune past 64 KiB: otherwise
        // the kernel takes megabytes meant for the hung reader, the gateway's
        // own queue empties, and the verdict (still slow_consumer) comes from
        // TCP_USER_TIMEOUT ending the zero window, by its clock, not the grace's.
        lifeline::testing::must(net_->in_host(kGatewayHost, "sysctl -q -w net.ipv4.tcp_wmem='4096 16384 65536'"));
        const std::string key_file = files_.write("key", kKey + "\n");
        const std::string flags = " --listen " + client_address() + " --http " + http_address() + " --key-file " +
                                  key_file + " --heartbeat 1s --timeout 6s --keepalive 1s:1s:2 --user-timeout auto" +
                                  " --output-budget " + kOutputBudget + " --slow-consumer-after 1s --threads 2";
        gateway_ = std::make_unique<ChildProcess>(in_host(kGatewayHost, PUSH_GATEWAY + flags), "true;");
        ASSERT_TRUE(gateway_->wait_for_event("listening", 10s)) << "the gateway did not start";
    }

    // argv for `command` (words without spaces) run in host i's namespace.
    std::vector<std::string> in_host(int host, const std::string& command) const {
        std::vector<std::string> argv = {"ip", "netns", "exec", net_->host_ns(host)};
        std::istringstream words(command);
        for (std::string word; words >> word;) argv.push_back(word);
        return argv;
    }
    std::string gateway_ip() const { return net_->address(kGatewayHost); }
    std::string client_address() const { return gateway_ip() + ":" + std::to_string(kClientPort); }
    std::string http_address() const { return gateway_ip() + ":" + std::to_string(kHttpPort); }

    // A push_clients process on `host` for `lines` ("<id> <credential> <room>").
    std::unique_ptr<ChildProcess> start_clients(int host, const std::string& name, const std::string& lines) {
        const std::string flags = " --server " + client_address() + " --clients " + files_.write(name, lines) +
                                  " --heartbeat 1s --timeout 6s --connect-timeout 30s";
        return std::make_unique<ChildProcess>(in_host(host, PUSH_CLIENTS + flags), "true;");
    }

    Answer http(const std::string& method, const std::string& path, const std::string& body = "") {
        return http_from(net_->host_ns(kOperatorHost), gateway_ip(), method, path, body);
    }

    // Pushes one message to a room; every push to a room counts for all its
    // well-behaved members. Returns the gateway's answer (who was full).
    Json push_room(int room, const std::string& body) {
        const Answer a = http("POST", "/rooms/" + room_of(room), body);
        EXPECT_EQ(a.status, 200) << a.body.dump();
        if (a.status != 200) return Json::object();
        EXPECT_TRUE(a.body.value("complete", false)) << a.body.dump();
        ++room_pushes_[room];
        for (const auto& id : a.body["full"]) full_.insert(id.get<std::string>());
        return a.body;
    }
    void push_direct(const std::string& id, const std::string& body) {
        const Answer a = http("POST", "/send/" + id, body);
        ASSERT_EQ(a.status, 200) << id << ": " << a.body.dump();
        EXPECT_EQ(a.body.value("delivered", 0), 1) << a.body.dump();
        ++direct_pushes_[id];
    }

    // Reads `process`'s lines until `count` events of `kind` arrived (any
    // "failed" or "down" line on the way is a failure); returns how many did.
    int await_count(ChildProcess& process, const std::string& kind, int count, milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        int seen = 0;
        while (seen < count) {
            const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
            auto e = process.wait_for(
                [&](const Json& j) {
                    const std::string k = j.value("event", "");
                    return k == kind || k == "failed" || k == "down";
                },
                left);
            if (!e) break;
            EXPECT_EQ(e->value("event", ""), kind) << e->dump();
            if (e->value("event", "") == kind) ++seen;
        }
        return seen;
    }

    std::string lines_of(const std::string& id) const {
        std::string out;
        for (const Json& e : gateway_->events())
            if (e.value("id", "") == id || e.dump().find(id) != std::string::npos) out += "\n  " + e.dump();
        return out;
    }

    // The gateway's close line for `id`: a line already read counts too.
    std::optional<Json> close_of(const std::string& id, milliseconds limit) {
        return gateway_->seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == "close" && j.value("id", "") == id; }, limit);
    }

    void TearDown() override {
        if (gateway_) {
            gateway_->signal(SIGTERM);
            EXPECT_EQ(gateway_->wait_exit(10s), 0) << "the gateway did not stop cleanly on SIGTERM";
        }
        clients_.clear();
        gateway_.reset();
        net_.reset();
    }

    TempFiles files_;
    std::unique_ptr<SwitchedNetwork> net_;
    std::unique_ptr<ChildProcess> gateway_;
    std::vector<std::unique_ptr<ChildProcess>> clients_;
    std::map<int, int> room_pushes_;
    std::map<std::string, int> direct_pushes_;
    std::set<std::string> full_;  // Every id a push found full.
};

TEST_F(PushGateway, TwoHundredClientsFourRoomsThreeFaultsNothingLost) {
    // ---- 200 clients join: 197 on one host in two processes, the faulty three on hosts of their own.
    std::vector<std::string> bulk(kBulkProcesses);
    std::map<std::string, int> room_by_id;
    std::string slow, stopped, cable;
    for (int room = 0; room < kRooms; ++room) {
        for (int n = 0; n < kPerRoom; ++n) {
            const std::string id = id_of(room, n);
            const std::string line = id + " " + push_gateway::credential_for(kKey, id) + " " + room_of(room) + "\n";
            if (id == kSlow)
                slow = line;
            else if (id == kStopped)
                stopped = line;
            else if (id == kCable)
                cable = line;
            else {
                bulk[room_by_id.size() % kBulkProcesses] += line;
                room_by_id[id] = room;
            }
        }
    }
    ASSERT_EQ(room_by_id.size(), 197u);
    for (int i = 0; i < kBulkProcesses; ++i)
        clients_.push_back(start_clients(kBulkHost, "bulk" + std::to_string(i), bulk[i]));
    clients_.push_back(start_clients(kSlowHost, "slow", slow));
    clients_.push_back(start_clients(kStopHost, "stopped", stopped));
    clients_.push_back(start_clients(kCableHost, "cable", cable));
    ChildProcess& slow_process = *clients_[kBulkProcesses];
    ChildProcess& stopped_process = *clients_[kBulkProcesses + 1];
    int joined = 0;
    for (int i = 0; i < kBulkProcesses; ++i) {
        const int expected = static_cast<int>((room_by_id.size() + kBulkProcesses - 1 - i) / kBulkProcesses);
        joined += await_count(*clients_[i], "joined", expected, 60s);
    }
    for (int i = kBulkProcesses; i < kBulkProcesses + 3; ++i) joined += await_count(*clients_[i], "joined", 1, 30s);
    ASSERT_EQ(joined, kRooms * kPerRoom);

    // ---- Warm-up: every room, and a few clients directly.
    for (int room = 0; room < kRooms; ++room) {
        for (int i = 0; i < 5; ++i) {
            const Json a = push_room(room, "warm-" + std::to_string(i));
            EXPECT_EQ(a.value("delivered", 0), kPerRoom) << a.dump();
        }
        push_direct(id_of(room, 7), "hello-" + id_of(room, 7));
    }
    const Answer online = http("GET", "/presence/" + id_of(1, 3));
    EXPECT_EQ(online.status, 200);
    EXPECT_EQ(online.body.dump(), R"({"id":"u1-03","online":true,"rooms":["r1"]})");
    EXPECT_EQ(http("GET", "/presence/nobody").status, 404);

    // ---- Bad commands cost only their sender: an error back, and it stays in its room (the fences check).
    const std::string typist = id_of(0, 1);  // The first id in the first bulk process.
    clients_[0]->write_stdin(typist + " dance\n" + typist + " join no/such/room\n" + typist + " rooms\n");
    for (const std::string expected :
         {"error unknown command 'dance': try help", "error join: a room is 1-64 of [A-Za-z0-9._-]", "ok rooms r0"}) {
        const auto r = clients_[0]->wait_for(
            [&](const Json& j) { return j.value("event", "") == "reply" && j.value("id", "") == typist; }, 10s);
        ASSERT_TRUE(r) << "no reply for '" << expected << "'";
        EXPECT_EQ(r->value("text", ""), expected);
    }

    // ---- Intruders: a wrong credential for a live id, and a right one without the holder's resume token.
    const std::string wrong = push_gateway::credential_for("not-the-key", kHolder);
    clients_.push_back(start_clients(kOperatorHost, "intruders",
                                     kHolder + " " + wrong + " r3\n" + id_of(3, 1) + " " +
                                         push_gateway::credential_for(kKey, id_of(3, 1)) + " r3\n"));
    ChildProcess& intruders = *clients_.back();
    for (const auto& [id, code] : {std::pair{kHolder, 1001}, std::pair{id_of(3, 1), 8}}) {
        const auto failed = intruders.seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == "failed" && j.value("id", "") == id; }, 10s);
        ASSERT_TRUE(failed) << id;
        EXPECT_EQ(failed->value("reason", ""), "rejected") << failed->dump();
        EXPECT_NE(failed->value("message", "").find("CLOSE " + std::to_string(code)), std::string::npos)
            << failed->dump();
        const auto rejected = gateway_->seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == "rejected" && j.value("id", "") == id; }, 10s);
        ASSERT_TRUE(rejected) << id;
        EXPECT_EQ(rejected->value("code", 0), code) << rejected->dump();
        EXPECT_EQ(http("GET", "/presence/" + id).body.value("online", false), true) << id << " was evicted";
    }
    EXPECT_EQ(push_room(3, "after-intruders").value("delivered", 0), kPerRoom) << "an intruder joined r3";

    // ---- Three faults at once.
    net_->pull_cable(kCableHost);
    stopped_process.signal(SIGSTOP);
    const std::int64_t stopped_at = now_ms();
    slow_process.signal(SIGUSR1);
    ASSERT_TRUE(slow_process.wait_for_event("stopped_reading", 10s));
    // Data in flight on the dead path: the kernel's verdict is the user timeout.
    const std::int64_t cable_sent_at = now_ms();
    const Answer to_cable = http("POST", "/send/" + kCable, "into-the-void");
    ASSERT_EQ(to_cable.status, 200) << to_cable.body.dump();
    // Room traffic until the hung reader's queue is over its budget.
    std::optional<std::int64_t> slow_full_at;
    const auto push_deadline = std::chrono::steady_clock::now() + 30s;
    for (int i = 0; i < kMaxHeavyPushes && !slow_full_at && std::chrono::steady_clock::now() < push_deadline; ++i) {
        push_room(0, "heavy-" + std::to_string(i) + " " + std::string(kHeavyBody, 'x'));
        if (full_.count(kSlow) != 0) slow_full_at = now_ms();
    }
    ASSERT_TRUE(slow_full_at) << "the hung reader's queue never filled";

    struct Fault {
        std::string id, reason;
        std::int64_t from_ms;
        milliseconds budget;
        int room;
    };
    const Fault faults[] = {
        {kSlow, "slow_consumer", *slow_full_at, kSlowGrace, 0},
        {kStopped, "heartbeat_timeout", stopped_at, kHeartbeatTimeout, 1},
        {kCable, "user_timeout", cable_sent_at, kUserTimeout + kRtoGranularity, 2},
    };
    for (const Fault& f : faults) {
        const std::optional<Json> closed = close_of(f.id, f.budget + kSchedulingSlack + 10s);
        ASSERT_TRUE(closed) << f.id << " was never closed";
        EXPECT_EQ(closed->value("reason", ""), f.reason) << closed->dump();
        EXPECT_EQ((*closed)["rooms"], Json::array({room_of(f.room)})) << closed->dump();
        const std::int64_t took = closed->value("at_ms", std::int64_t{0}) - f.from_ms;
        EXPECT_LE(took, (f.budget + kSchedulingSlack).count())
            << f.id << ": closed " << took << " ms after the fault; its gateway lines:" << lines_of(f.id);
        std::printf("[ measured ] %s: %s %lld ms after the fault (budget %lld ms)\n", f.id.c_str(), f.reason.c_str(),
                    static_cast<long long>(took), static_cast<long long>(f.budget.count()));
        const Answer presence = http("GET", "/presence/" + f.id);
        EXPECT_EQ(presence.body.value("online", true), false) << presence.body.dump();
        EXPECT_EQ(presence.body.value("reason", ""), f.reason) << presence.body.dump();
    }

    // ---- After the faults: the rooms hold only the living, and everyone else still gets everything.
    for (int room = 0; room < kRooms; ++room) {
        for (int i = 0; i < 5; ++i) {
            const Json a = push_room(room, "after-" + std::to_string(i));
            EXPECT_EQ(a.value("delivered", 0), room == 3 ? kPerRoom : kPerRoom - 1) << a.dump();
        }
        push_direct(id_of(room, 9), "bye-" + id_of(room, 9));
    }
    EXPECT_EQ(full_, std::set<std::string>{kSlow}) << "a push found a well-behaved client full";
    for (int room = 0; room < kRooms; ++room) {
        const Answer fence = http("POST", "/rooms/" + room_of(room), "fence end");
        EXPECT_EQ(fence.status, 200);
    }
    std::map<std::string, Json> fences;
    for (int i = 0; i < kBulkProcesses; ++i) {
        const int expected = static_cast<int>((room_by_id.size() + kBulkProcesses - 1 - i) / kBulkProcesses);
        EXPECT_EQ(await_count(*clients_[i], "fence", expected, 30s), expected);
        for (const Json& e : clients_[i]->events())
            if (e.value("event", "") == "fence") fences[e.value("id", "")] = e;
    }
    ASSERT_EQ(fences.size(), room_by_id.size());
    for (const auto& [id, room] : room_by_id) {
        const Json& f = fences[id];
        const int expected = room_pushes_[room] + direct_pushes_[id];
        EXPECT_EQ(f.value("messages", -1), expected) << f.dump();
        EXPECT_EQ(f.value("duplicates", -1), 0) << f.dump();
        EXPECT_EQ(f.value("foreign", -1), 0) << f.dump();
    }
    for (const Json& e : gateway_->events()) {
        if (e.value("event", "") != "close") continue;
        const std::string id = e.value("id", "");
        EXPECT_TRUE(id == kSlow || id == kStopped || id == kCable) << "closed a well-behaved client: " << e.dump();
    }
}

}  // namespace
