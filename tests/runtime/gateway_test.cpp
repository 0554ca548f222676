// The gateway API (lifeline/server.hpp) on a real in-process Server and real
// loopback sockets: admission and takeover by resume token, send / full /
// on_writable, close, find, broadcast, stats, adopt, and callbacks that
// throw. The test plays the clients on plain sockets (it must control every
// byte of the HELLO), except where lifeline::Client's own reconnect is tested.
// Every wait is on a frame, a socket or a callback, with a generous bound.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lifeline/client.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/server.hpp"
#include "lifeline/testing.hpp"
#include "net/loopback_pair.hpp"

namespace lifeline {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::Fd;

constexpr auto kLimit = 10s;  // Only a broken server (or real starvation) takes this long.

std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// What the server's callbacks saw, for the test thread to wait on.
struct Record {
    std::vector<ConnectionId> opened;
    std::vector<std::pair<ConnectionId, DisconnectReason>> closed;
    std::vector<std::pair<ConnectionId, std::string>> messages;
    std::vector<ConnectionId> writable;
    std::vector<Event> events;
};

class Gateway {
public:
    using Hook = std::function<void(Server&, ConnectionId)>;

    explicit Gateway(ServerOptions options = {}, std::function<Admission(const HelloInfo&)> on_hello = {},
                     Hook on_open = {}) {
        options.listen = "127.0.0.1:0";
        ServerCallbacks c;
        c.on_hello = std::move(on_hello);
        c.on_event = [this](const Event& e) { update([&](Record& r) { r.events.push_back(e); }); };
        c.on_open = [this, on_open = std::move(on_open)](ConnectionId conn) {
            update([&](Record& r) { r.opened.push_back(conn); });
            if (on_open) on_open(*server_, conn);
        };
        c.on_message = [this](ConnectionId conn, std::span<const std::uint8_t> p) {
            const std::string text(reinterpret_cast<const char*>(p.data()), p.size());
            if (text == "throw") throw std::runtime_error("the application choked on 'throw'");
            update([&](Record& r) { r.messages.emplace_back(conn, text); });
        };
        c.on_close = [this](ConnectionId conn, DisconnectReason reason, const std::string&) {
            update([&](Record& r) { r.closed.emplace_back(conn, reason); });
        };
        c.on_writable = [this](ConnectionId conn) { update([&](Record& r) { r.writable.push_back(conn); }); };
        auto created = Server::create(options, std::move(c));
        if (!created) throw std::runtime_error(created.error().message);
        server_ = std::move(*created);
        thread_ = std::thread([this] { server_->run(); });
    }
    ~Gateway() {
        server_->stop();
        thread_.join();
    }
    Server& server() { return *server_; }
    std::uint16_t port() const {
        const std::string a = server_->local_address();
        return static_cast<std::uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
    }
    // Waits until `ready(record)`; the record as it was then (or at the bound).
    Record wait(const std::function<bool(const Record&)>& ready, std::chrono::milliseconds limit = kLimit) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, limit, [&] { return ready(record_); });
        return record_;
    }
    Record now() {
        return wait([](const Record&) { return true; });
    }

private:
    void update(const std::function<void(Record&)>& change) {
        std::lock_guard lock(mutex_);
        change(record_);
        changed_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    Record record_;
    std::unique_ptr<Server> server_;
    std::thread thread_;
};

int closes_of(const Record& r, ConnectionId conn) {
    int n = 0;
    for (const auto& [c, reason] : r.closed) n += c == conn ? 1 : 0;
    return n;
}

// A framed client on a plain socket: sends exactly the frames it is told to.
class WireClient {
public:
    explicit WireClient(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        testing::check(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "connect");
    }
    explicit WireClient(Fd fd) : fd_(std::move(fd)) {}

    void send(const Frame& frame) {
        std::vector<std::uint8_t> out;
        ASSERT_TRUE(append_frame(out, frame).ok());
        ASSERT_EQ(::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
    }
    void hello(const std::string& id, const std::string& token = "", const std::string& credential = "") {
        send(Hello{kProtocolVersion, 100, 2000, id, token, credential});
    }
    // The next frame from the server; nullopt on EOF, error or the bound.
    std::optional<Frame> next(std::chrono::milliseconds limit = kLimit) {
        const auto deadline = Clock::now() + limit;
        while (true) {
            std::span<const std::uint8_t> input(buffer_.data() + consumed_, buffer_.size() - consumed_);
            FrameDecoder::Step step = decoder_.next(input);
            consumed_ = buffer_.size() - input.size();
            if (step.error) return std::nullopt;
            if (step.frame) return step.frame;
            buffer_.clear();
            consumed_ = 0;
            if (!read_some(deadline)) return std::nullopt;
        }
    }
    template <class T>
    std::optional<T> next_of(std::chrono::milliseconds limit = kLimit) {
        const auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            std::optional<Frame> f = next(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()));
            if (!f) return std::nullopt;
            if (const T* t = std::get_if<T>(&*f)) return *t;
        }
        return std::nullopt;
    }
    // True once the server closed its end (EOF or reset) within the bound.
    bool closed_by_server(std::chrono::milliseconds limit = kLimit) {
        const auto deadline = Clock::now() + limit;
        while (read_some(deadline)) buffer_.clear();
        return eof_;
    }
    int fd() const { return fd_.get(); }

private:
    bool read_some(Clock::time_point deadline) {
        pollfd p{fd_.get(), POLLIN, 0};
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) return false;
        std::uint8_t chunk[16 * 1024];
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
        if (n <= 0) {
            eof_ = true;
            return false;
        }
        buffer_.insert(buffer_.end(), chunk, chunk + n);
        return true;
    }

    Fd fd_;
    FrameDecoder decoder_{DecoderRole::client};
    std::vector<std::uint8_t> buffer_;
    std::size_t consumed_ = 0;
    bool eof_ = false;
};

// Opens `client` as `id`: its WELCOME (with the resume token it was issued).
Welcome open_as(WireClient& client, const std::string& id, const std::string& token = "") {
    client.hello(id, token);
    std::optional<Welcome> w = client.next_of<Welcome>();
    if (!w) throw std::runtime_error("no WELCOME for " + id);
    return *w;
}

// The server still answers `client`: a PING gets its PONG.
bool still_served(WireClient& client, std::uint64_t seq) {
    client.send(Ping{seq, 0});
    std::optional<Pong> pong = client.next_of<Pong>();
    return pong && pong->seq == seq;
}

std::optional<ConnectionId> wait_find(Gateway& g, const std::string& id) {
    std::optional<ConnectionId> found;
    g.wait([&](const Record&) { return (found = g.server().find(id)).has_value(); });
    return found;
}

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

TEST(Admission, FramesBeforeTheVerdictAreAProtocolError) {
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

// ---- Sending --------------------------------------------------------------------------

TEST(Send, FromTheLoopAndFromAnotherThreadAndToNothing) {
    Gateway g({}, {}, [](Server& s, ConnectionId conn) {
        Result<SendStatus> r = s.send(conn, bytes_of("welcome aboard"));
        if (!r || *r != SendStatus::sent) throw std::runtime_error("send from on_open did not say sent");
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

}  // namespace
}  // namespace lifeline
