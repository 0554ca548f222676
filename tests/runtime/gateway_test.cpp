// The gateway API on a real in-process Server and loopback sockets: send /
// full / on_writable, close, broadcast, find, stats, context, adopt, and
// callbacks that throw or block.
#include "runtime/gateway_support.hpp"

namespace lifeline::gateway_test {
namespace {

// ---- Sending --------------------------------------------------------------------------

TEST(Send, FromTheLoopAndFromAnotherThreadAndToNothing) {
    Gateway g({}, {}, [](Server& s, ConnectionId conn) {
        Result<SendStatus> r = s.send(conn, bytes_of("welcome aboard"));
        // epoll writes at once; an io_uring loop hands output to the ring at the end of the turn.
        const SendStatus expected = test_io() == IoBackend::uring ? SendStatus::queued : SendStatus::sent;
        if (!r || *r != expected) throw std::runtime_error("send from on_open did not say what its backend does");
    });
    WireClient c(g.port());
    open_as(c, "reader");
    std::optional<Data> first = c.next_of<Data>();
    ASSERT_TRUE(first);
    EXPECT_EQ(std::string(first->payload.begin(), first->payload.end()), "welcome aboard");

    const std::optional<ConnectionId> conn = wait_find(g, "reader");
    ASSERT_TRUE(conn);
    Result<SendStatus> posted = g.server().send(*conn, bytes_of("from the test thread"));
    ASSERT_TRUE(posted);
    EXPECT_EQ(*posted, SendStatus::queued);
    std::optional<Data> second = c.next_of<Data>();
    ASSERT_TRUE(second);
    EXPECT_EQ(std::string(second->payload.begin(), second->payload.end()), "from the test thread");

    Result<SendStatus> too_big = g.server().send(*conn, std::vector<std::uint8_t>(64 * 1024 + 1));
    ASSERT_FALSE(too_big);
    EXPECT_EQ(too_big.error().code, Errc::too_large);
    Result<SendStatus> bogus = g.server().send(ConnectionId{12345, 99, 0}, bytes_of("x"));
    ASSERT_FALSE(bogus);
    EXPECT_EQ(bogus.error().code, Errc::invalid_argument);
    // Closed: on the loop, send says not_open.
    ASSERT_TRUE(g.server().close(*conn, 4000, "bye"));
    std::optional<Close> close = c.next_of<Close>();
    ASSERT_TRUE(close);
    EXPECT_EQ(close->code, 4000);
    g.wait([&](const Record& rec) { return closes_of(rec, *conn) == 1; });
    std::promise<Result<SendStatus>> on_loop;
    ASSERT_TRUE(g.server().post(*conn, [&] { on_loop.set_value(g.server().send(*conn, bytes_of("late"))); }));
    Result<SendStatus> late = on_loop.get_future().get();
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, Errc::not_open);
    EXPECT_EQ(g.now().closed.front().second, DisconnectReason::local_close);
}

TEST(Send, FullUntilTheReaderCatchesUpThenOnWritable) {
    ServerOptions o;
    o.output_budget = 64 * 1024;
    o.slow_consumer_after = Duration::seconds(60);  // The test reads long before that.
    std::promise<int> accepted_before_full;
    Gateway g(o, {}, [&](Server& s, ConnectionId conn) {
        // The client does not read yet: the kernel's buffers fill, then the queue.
        const std::vector<std::uint8_t> chunk(1024, 'x');
        for (int i = 0; i < 100'000; ++i) {
            Result<SendStatus> r = s.send(conn, chunk);
            if (!r) throw std::runtime_error(r.error().message);
            if (*r == SendStatus::full) {
                accepted_before_full.set_value(i);
                return;
            }
        }
        accepted_before_full.set_value(-1);
    });
    WireClient c(g.port());
    c.hello("slow");
    const int sent = accepted_before_full.get_future().get();
    ASSERT_GT(sent, 0) << "send() never said full";
    // Now read everything: the queue drains and on_writable follows, once.
    std::size_t data = 0;
    while (data < static_cast<std::size_t>(sent)) {
        std::optional<Data> d = c.next_of<Data>();
        ASSERT_TRUE(d) << "after " << data << " of " << sent << " frames";
        ++data;
    }
    const Record r = g.wait([](const Record& rec) { return !rec.writable.empty(); });
    EXPECT_EQ(r.writable.size(), 1u);
    EXPECT_TRUE(r.closed.empty());
}

TEST(Send, BroadcastReachesEveryOpenConnectionTheFilterAccepts) {
    Gateway g(ServerOptions{.threads = 2});
    std::vector<std::unique_ptr<WireClient>> clients;
    for (int i = 0; i < 6; ++i) {
        clients.push_back(std::make_unique<WireClient>(g.port()));
        open_as(*clients.back(), "member-" + std::to_string(i));
    }
    g.wait([](const Record& rec) { return rec.opened.size() == 6; });
    EXPECT_EQ(g.server().broadcast(bytes_of("to all")), 2u);  // One hand-over per loop.
    const ConnectionId odd = *g.server().find("member-1");
    g.server().broadcast(bytes_of("to one"), [odd](ConnectionId c) { return c == odd; });
    for (int i = 0; i < 6; ++i) {
        std::optional<Data> d = clients[i]->next_of<Data>();
        ASSERT_TRUE(d) << i;
        EXPECT_EQ(std::string(d->payload.begin(), d->payload.end()), "to all");
    }
    std::optional<Data> only = clients[1]->next_of<Data>();
    ASSERT_TRUE(only);
    EXPECT_EQ(std::string(only->payload.begin(), only->payload.end()), "to one");
    // The others got nothing more: a PING is answered with nothing before its PONG.
    for (int i : {0, 2, 3, 4, 5}) {
        clients[i]->send(Ping{9, 0});
        std::optional<Frame> f = clients[i]->next();
        ASSERT_TRUE(f);
        EXPECT_TRUE(std::holds_alternative<Pong>(*f)) << i;
    }
}

// ---- Looking at connections -----------------------------------------------------------

TEST(Inspect, StatsAndFindFromAnyThread) {
    Gateway g;
    WireClient c(g.port());
    open_as(c, "watched");
    const std::optional<ConnectionId> conn = wait_find(g, "watched");
    ASSERT_TRUE(conn);
    ASSERT_TRUE(still_served(c, 3));
    Result<ConnectionStats> s = g.server().stats(*conn);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->client_id, "watched");
    EXPECT_TRUE(s->open);
    EXPECT_GT(s->bytes_in, 0u);
    EXPECT_GT(s->bytes_out, 0u);
    EXPECT_EQ(s->timeout, Duration::seconds(2));
    EXPECT_FALSE(g.server().find("nobody"));
    EXPECT_EQ(g.server().context(*conn), nullptr);  // Not on its loop.
    EXPECT_FALSE(g.server().set_context(*conn, &c));
}

TEST(Inspect, ContextIsKeptPerConnectionOnItsLoop) {
    static int marker = 0;
    std::promise<void*> seen;
    Gateway g({}, {}, [&](Server& s, ConnectionId conn) {
        if (!s.set_context(conn, &marker)) throw std::runtime_error("set_context failed on the loop");
        seen.set_value(s.context(conn));
    });
    WireClient c(g.port());
    open_as(c, "ctx");
    EXPECT_EQ(seen.get_future().get(), &marker);
}

// ---- Adopt -------------------------------------------------------------------------------

TEST(Adopt, ASocketAcceptedElsewhereIsServedLikeAnAcceptedOne) {
    Gateway g;
    testing::LoopbackPair pair = testing::make_loopback_pair();
    ASSERT_TRUE(g.server().adopt(pair.server.release()));
    WireClient c(std::move(pair.client));
    open_as(c, "adopted");
    EXPECT_TRUE(still_served(c, 5));
    EXPECT_TRUE(wait_find(g, "adopted"));

    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    ::close(pipe_fds[1]);
    Result<void> not_socket = g.server().adopt(pipe_fds[0]);  // Owned (and closed) by adopt either way.
    ASSERT_FALSE(not_socket);
    EXPECT_NE(not_socket.error().message.find("not a socket"), std::string::npos) << not_socket.error().message;
    const int unconnected = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Result<void> lonely = g.server().adopt(unconnected);
    ASSERT_FALSE(lonely);
    EXPECT_EQ(lonely.error().code, Errc::system);
}

// ---- Misuse --------------------------------------------------------------------------------

TEST(Misuse, ACallbackThatThrowsClosesOnlyItsConnection) {
    Gateway g;
    WireClient victim(g.port());
    WireClient bystander(g.port());
    open_as(victim, "victim");
    open_as(bystander, "bystander");
    const std::optional<ConnectionId> v = wait_find(g, "victim");
    ASSERT_TRUE(v);
    victim.send(Data{bytes_of("throw")});
    EXPECT_TRUE(victim.closed_by_server());
    const Record r = g.wait([&](const Record& rec) { return closes_of(rec, *v) == 1; });
    ASSERT_EQ(r.closed.size(), 1u);
    EXPECT_EQ(r.closed.front().second, DisconnectReason::local_close);
    bool reported = false;
    for (const Event& e : r.events)
        reported |= e.kind == EventKind::error && e.message.find("on_message threw: the application choked") == 0;
    EXPECT_TRUE(reported);
    bystander.send(Data{bytes_of("still here")});
    EXPECT_TRUE(still_served(bystander, 11));
    EXPECT_EQ(g.wait([](const Record& rec) { return !rec.messages.empty(); }).messages.size(), 1u);
}

TEST(Misuse, ACallbackThatBlocksItsLoopIsReportedByTheStallGuard) {
    ServerOptions o;
    o.stall_threshold = Duration::milliseconds(100);  // A third of the block.
    Gateway g(o);
    WireClient c(g.port());
    open_as(c, "sleepy");
    c.send(Data{bytes_of("block")});
    const Record r = g.wait([](const Record& rec) {
        return std::any_of(rec.events.begin(), rec.events.end(),
                           [](const Event& e) { return e.kind == EventKind::stall; });
    });
    ASSERT_TRUE(
        std::any_of(r.events.begin(), r.events.end(), [](const Event& e) { return e.kind == EventKind::stall; }));
    EXPECT_NE(g.server().metrics_text().find("lifeline_loop_stalls_total 1"), std::string::npos)
        << g.server().metrics_text();
    // The stall is not held against the peer: it is still served.
    EXPECT_TRUE(still_served(c, 13));
    EXPECT_TRUE(r.closed.empty());
}

}  // namespace
}  // namespace lifeline::gateway_test
