// The gateway API's admission on a real in-process Server: on_hello's verdict
// and its CLOSE code, and takeover by resume token (right token replaces the
// holder once; a missing or wrong one is refused and the holder stays), also
// through lifeline::Client's own reconnect.
#include "runtime/gateway_support.hpp"

namespace lifeline::gateway_test {
namespace {

// ---- Takeover -------------------------------------------------------------------

TEST(Takeover, TheHoldersResumeTokenReplacesItOnce) {
    Gateway g;
    WireClient holder(g.port());
    const Welcome first = open_as(holder, "device-7");
    ASSERT_EQ(first.resume_token.size(), 16u);
    const std::optional<ConnectionId> old_conn = wait_find(g, "device-7");
    ASSERT_TRUE(old_conn);

    WireClient comeback(g.port());
    const Welcome second = open_as(comeback, "device-7", first.resume_token);
    EXPECT_NE(second.resume_token, first.resume_token);  // A fresh token for every WELCOME.
    std::optional<Close> close = holder.next_of<Close>();
    ASSERT_TRUE(close);
    EXPECT_EQ(close->code, static_cast<std::uint16_t>(CloseCode::session_replaced));
    EXPECT_TRUE(holder.closed_by_server());

    const Record r = g.wait([&](const Record& rec) { return closes_of(rec, *old_conn) == 1; });
    ASSERT_EQ(closes_of(r, *old_conn), 1);
    EXPECT_EQ(r.closed.front().first, *old_conn);
    EXPECT_EQ(r.closed.front().second, DisconnectReason::session_replaced);
    EXPECT_EQ(r.opened.size(), 2u);
    const std::optional<ConnectionId> now_conn = g.server().find("device-7");
    ASSERT_TRUE(now_conn);
    EXPECT_NE(now_conn->number, old_conn->number);
    EXPECT_TRUE(still_served(comeback, 1));
    // Presence: online under the new session's epoch; the old one's offline
    // was superseded and changed nothing.
    std::optional<PresenceRecord> p = g.server().presence("device-7");
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->online);
    EXPECT_EQ(p->epoch, 2u);
    EXPECT_EQ(p->conn, now_conn->number);
    int offline = 0;
    for (const Event& e : g.now().events) {
        if (e.kind != EventKind::offline) continue;
        ++offline;
        EXPECT_EQ(e.reason, DisconnectReason::session_replaced);
        EXPECT_EQ(e.epoch, 1u);  // Its own epoch, though it no longer decides presence.
        EXPECT_EQ(e.message.rfind("superseded", 0), 0u) << e.message;
    }
    EXPECT_EQ(offline, 1);
    // The replaced connection's token is spent: it cannot take the id back.
    WireClient replay(g.port());
    replay.hello("device-7", first.resume_token);
    std::optional<Close> refused = replay.next_of<Close>();
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->code, static_cast<std::uint16_t>(CloseCode::id_in_use));
}

TEST(Takeover, AMissingOrWrongTokenIsRefusedAndTheHolderKeepsItsConnection) {
    Gateway g;
    WireClient holder(g.port());
    const Welcome welcome = open_as(holder, "device-8");
    const std::optional<ConnectionId> held = wait_find(g, "device-8");
    ASSERT_TRUE(held);

    std::string wrong = welcome.resume_token;
    wrong[0] = static_cast<char>(wrong[0] ^ 1);
    for (const std::string& token : {std::string(), wrong, std::string("short")}) {
        WireClient intruder(g.port());
        intruder.hello("device-8", token);
        std::optional<Close> close = intruder.next_of<Close>();
        ASSERT_TRUE(close) << "token of " << token.size() << " bytes";
        EXPECT_EQ(close->code, static_cast<std::uint16_t>(CloseCode::id_in_use));
        EXPECT_TRUE(intruder.closed_by_server());
    }
    EXPECT_TRUE(still_served(holder, 7));
    const Record r = g.now();
    EXPECT_EQ(r.opened.size(), 1u);  // Refused newcomers were never admitted ...
    EXPECT_TRUE(r.closed.empty());   // ... so they owe no on_close, and the holder is untouched.
    EXPECT_EQ(g.server().find("device-8"), held);
    int rejected = 0;
    for (const Event& e : r.events) rejected += e.kind == EventKind::closed && e.reason == DisconnectReason::rejected;
    EXPECT_EQ(rejected, 3);
}

TEST(Takeover, AReconnectingClientPresentsItsTokenAndReplacesItsStaleConnection) {
    Gateway g;
    ClientOptions o;
    o.server = "127.0.0.1:" + std::to_string(g.port());
    o.id = "phoenix";
    o.heartbeat = Duration::milliseconds(100);
    o.timeout = Duration::seconds(2);
    o.reconnect = true;
    o.backoff_initial = Duration::milliseconds(10);
    o.backoff_max = Duration::milliseconds(20);
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<Event> client_events;
    ClientCallbacks callbacks;
    callbacks.on_event = [&](const Event& e) {
        std::lock_guard lock(mutex);
        client_events.push_back(e);
        changed.notify_all();
    };
    auto client = testing::create_client(o, callbacks, {});
    ASSERT_TRUE(client) << client.error().message;
    std::thread runner([&] { (*client)->run(); });
    const std::optional<ConnectionId> first = wait_find(g, "phoenix");
    ASSERT_TRUE(first);
    auto hellos = [&](std::size_t n) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, kLimit, [&] {
            return std::count_if(client_events.begin(), client_events.end(),
                                 [](const Event& e) { return e.kind == EventKind::hello; }) >= static_cast<long>(n);
        });
    };
    ASSERT_TRUE(hellos(1));  // abandon() acts on an open connection only.
    // The path is lost without a FIN: the server still holds `first`.
    testing::abandon(**client, 0);
    const Record r = g.wait([&](const Record& rec) { return closes_of(rec, *first) == 1 && rec.opened.size() == 2; });
    EXPECT_TRUE(hellos(2));
    (*client)->stop();
    runner.join();
    std::string log;
    for (const Event& e : client_events) log += to_json_line(e) + "\n";
    for (const Event& e : r.events) log += "server: " + to_json_line(e) + "\n";
    ASSERT_EQ(closes_of(r, *first), 1) << log;
    EXPECT_EQ(r.closed.front().second, DisconnectReason::session_replaced);
    EXPECT_EQ(r.opened.size(), 2u);
    std::lock_guard lock(mutex);
    int resumed = 0;
    for (const Event& e : client_events) resumed += e.kind == EventKind::hello && !e.message.empty();
    EXPECT_EQ(resumed, 1);
}

// ---- Admission ---------------------------------------------------------------------

TEST(Admission, DataPipelinedAfterTheHelloIsDeliveredOnceAdmitted) {
    Gateway g;
    WireClient c(g.port());
    c.hello("eager");
    c.send(Data{bytes_of("no need to wait for the WELCOME")});
    ASSERT_TRUE(c.next_of<Welcome>());
    const Record r = g.wait([](const Record& rec) { return !rec.messages.empty(); });
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.messages[0].second, "no need to wait for the WELCOME");
}

TEST(Admission, OnHelloSeesTheCredentialAndItsRejectCodeReachesTheClient) {
    std::mutex mutex;
    std::vector<std::string> credentials;
    Gateway g({}, [&](const HelloInfo& h) -> Admission {
        std::lock_guard lock(mutex);
        credentials.emplace_back(h.credential);
        if (h.credential != "let-me-in") return Reject{4001, "bad credential for " + std::string(h.client_id)};
        return Admit{};
    });
    WireClient bad(g.port());
    bad.hello("sensor-1", "", "guess");
    std::optional<Close> close = bad.next_of<Close>();
    ASSERT_TRUE(close);
    EXPECT_EQ(close->code, 4001);
    EXPECT_EQ(close->reason, "bad credential for sensor-1");
    EXPECT_TRUE(bad.closed_by_server());

    WireClient good(g.port());
    good.hello("sensor-1", "", "let-me-in");
    ASSERT_TRUE(good.next_of<Welcome>());
    std::lock_guard lock(mutex);
    EXPECT_EQ(credentials, (std::vector<std::string>{"guess", "let-me-in"}));
}

TEST(Admission, DataBeforeHelloIsAProtocolError) {
    // Nothing but a HELLO opens a session: DATA first is refused with a
    // CLOSE, and the application never hears of the connection.
    Gateway g;
    WireClient early(g.port());
    early.send(Data{bytes_of("too soon")});
    std::optional<Close> close = early.next_of<Close>();
    ASSERT_TRUE(close);
    EXPECT_EQ(close->code, static_cast<std::uint16_t>(CloseCode::protocol_error));
    EXPECT_TRUE(g.now().opened.empty());
}

}  // namespace
}  // namespace lifeline::gateway_test
