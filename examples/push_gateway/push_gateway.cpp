// push_gateway: a push/chat gateway on lifeline::Server's gateway API.
//
// Clients connect with the framed protocol (docs/PROTOCOL.md), an id and a
// credential = hex HMAC-SHA256(key, id) in their HELLO, then join rooms with
// text commands in DATA frames. An HTTP endpoint on a separate address pushes
// messages to one client or to a room and answers who is online; lifeline
// decides who is dead and why, and the gateway drops the dead from their rooms
// with that reason. README.md beside this file has the command set and the API.
//
// Threads: lifeline's loops run the callbacks; httplib's pool runs the HTTP
// handlers. They share one thing, the Directory (who is who, who is in which
// room, who left why), behind one mutex: HTTP handlers must read room
// membership from their own threads, and with --threads > 1 clients on
// different loops join the same room at once, so a loop-owned map would need
// cross-loop hand-offs for every join and every lookup. Everything else
// crosses threads through Server's thread-safe calls (find, post, send).
#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "credential.hpp"
#include "directory.hpp"
#include "duration_option.hpp"
#include "lifeline/server.hpp"

namespace push_gateway {
namespace {

using lifeline::ConnectionId;
using lifeline::DisconnectReason;
using lifeline::Duration;
using Json = nlohmann::json;

// Our CLOSE codes, after lifeline's own (docs/PROTOCOL.md).
constexpr std::uint16_t kBadCredential = lifeline::kFirstApplicationCloseCode + 1;
constexpr std::uint16_t kBadId = lifeline::kFirstApplicationCloseCode + 2;
constexpr std::size_t kMaxNameSize = 64;
constexpr std::size_t kPrefixRoom = 128;  // For "room <name> " in front of a pushed body.
constexpr auto kFanOutLimit = std::chrono::seconds(5);

// Ids and rooms appear in URLs and log lines: keep them to a safe alphabet.
bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > kMaxNameSize) return false;
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// "2026-12-07T01:31:10.170Z", for people reading /presence.
std::string iso_time(std::int64_t ms) {
    const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    const std::size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text + n, sizeof(text) - n, ".%03dZ", static_cast<int>(ms % 1000));
    return text;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Log lines leave through a thread of their own: a callback that blocked on
// a full stdout pipe would stall its whole loop, and with it the heartbeats
// of every client on that loop.
class LineWriter {
public:
    LineWriter() : thread_([this] { drain(); }) {}
    ~LineWriter() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        changed_.notify_one();
        thread_.join();
    }
    void write(const Json& line) {
        std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace);
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(text));
        changed_.notify_one();
    }

private:
    void drain() {
        std::unique_lock lock(mutex_);
        while (true) {
            changed_.wait(lock, [&] { return done_ || !queue_.empty(); });
            if (queue_.empty()) return;  // done_ and nothing left.
            std::vector<std::string> batch;
            batch.swap(queue_);
            lock.unlock();
            for (const std::string& line : batch) std::fprintf(stdout, "%s\n", line.c_str());
            std::fflush(stdout);
            lock.lock();
        }
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> queue_;
    bool done_ = false;
    std::thread thread_;  // Last: starts once the rest exists.
};

struct Gateway {
    std::string key;
    lifeline::Server* server = nullptr;
    Directory directory;
    LineWriter out;
};

// ---- Client commands (DATA frames, on the connection's loop) ------------------

// A command echoed in an error must not smuggle control bytes into a reply.
std::string printable(std::string_view text) {
    std::string out(text.substr(0, 32));
    for (char& c : out)
        if (c < 0x20 || c > 0x7e) c = '?';
    return out;
}

std::string execute(Gateway& g, ConnectionId conn, std::string_view text) {
    // Typed lines may arrive with their line ending.
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    const std::size_t space = text.find(' ');
    const std::string_view verb = text.substr(0, space);
    const std::string arg(space == std::string_view::npos ? std::string_view() : text.substr(space + 1));
    if (verb == "help" && arg.empty()) return "ok help join <room> | leave <room> | rooms | help";
    if (verb == "rooms" && arg.empty()) {
        std::string reply = "ok rooms";
        for (const std::string& room : g.directory.rooms_of(conn)) reply += " " + room;
        return reply;
    }
    if (verb == "join" || verb == "leave") {
        if (!valid_name(arg)) return std::string("error ") + std::string(verb) + ": a room is 1-64 of [A-Za-z0-9._-]";
        if (verb == "leave")
            return g.directory.leave(conn, arg) ? "ok leave " + arg : "error leave: not a member of " + arg;
        if (g.directory.join(conn, arg) == Directory::Join::too_many)
            return "error join: at most " + std::to_string(kMaxRoomsPerClient) + " rooms per client";
        return "ok join " + arg;  // Joining twice is harmless: still one membership.
    }
    return "error unknown command '" + printable(text) + "': try help";
}

// ---- Admission and lifecycle (loop threads) ---------------------------------------

lifeline::Admission admit(Gateway& g, const lifeline::HelloInfo& hello) {
    lifeline::Admission verdict = lifeline::Admit{};
    if (!valid_name(hello.client_id)) {
        verdict = lifeline::Reject{kBadId, "the id must be 1-64 of [A-Za-z0-9._-]"};
    } else if (!credential_matches(g.key, hello.client_id, hello.credential)) {
        // Checked before default_admission: a bad credential must not even
        // learn whether the id is online, let alone replace it.
        verdict = lifeline::Reject{kBadCredential, "bad credential"};
    } else {
        // A live id is only replaced by its holder's resume token.
        verdict = lifeline::default_admission(hello);
    }
    if (const auto* no = std::get_if<lifeline::Reject>(&verdict)) {
        g.out.write({{"event", "rejected"},
                     {"id", printable(hello.client_id)},
                     {"peer", std::string(hello.peer)},
                     {"code", no->code},
                     {"text", no->text},
                     {"at_ms", now_ms()}});
    }
    return verdict;
}

lifeline::ServerCallbacks callbacks(Gateway& g) {
    lifeline::ServerCallbacks c;
    c.on_event = [&g](const lifeline::Event& e) {
        if (e.kind == lifeline::EventKind::error || e.kind == lifeline::EventKind::stall)
            g.out.write(Json::parse(lifeline::to_json_line(e)));
    };
    c.on_hello = [&g](const lifeline::HelloInfo& hello) { return admit(g, hello); };
    c.on_open = [&g](ConnectionId conn) {
        // On the loop, stats() answers at once: it knows the id the HELLO claimed.
        lifeline::Result<lifeline::ConnectionStats> s = g.server->stats(conn);
        if (s) g.directory.opened(conn, s->client_id);
    };
    c.on_message = [&g](ConnectionId conn, std::span<const std::uint8_t> payload) {
        const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
        // A reply that finds the queue full is dropped: that client is not
        // reading, and lifeline will judge it (slow_consumer).
        (void)g.server->send(conn, bytes_of(execute(g, conn, text)));
    };
    c.on_close = [&g](ConnectionId conn, DisconnectReason reason, const std::string& detail) {
        const LastSeen how{reason, detail, now_ms()};
        auto [id, rooms] = g.directory.closed(conn, how);
        g.out.write({{"event", "close"},
                     {"id", id},
                     {"conn", conn.number},
                     {"rooms", rooms},
                     {"reason", std::string(lifeline::to_string(reason))},
                     {"detail", detail},
                     {"at_ms", how.at_ms}});
    };
    return c;
}

// ---- Fan-out (HTTP threads) -------------------------------------------------------

// What happened to one push, added up across loops.
struct Tally {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t pending = 0;  // Loops still to report.
    std::size_t delivered = 0;
    std::size_t gone = 0;  // Closed since the member list was taken.
    std::vector<std::string> full;
};

// Sends `payload` to `members`: one post() per loop, which sends to each of
// that loop's members there, where send() is exact (sent/queued/full, or
// not_open). Waits for every loop's answer, so the HTTP reply says what
// happened instead of "queued".
Json fan_out(lifeline::Server& server, std::vector<Member> members, const std::string& payload) {
    auto bytes = std::make_shared<const std::vector<std::uint8_t>>(payload.begin(), payload.end());
    std::map<std::uint32_t, std::vector<Member>> by_loop;
    for (Member& m : members) by_loop[m.conn.loop].push_back(std::move(m));
    auto tally = std::make_shared<Tally>();
    tally->pending = by_loop.size();
    for (auto& [loop, group] : by_loop) {
        const ConnectionId first = group.front().conn;
        const std::size_t size = group.size();
        auto job = [&server, tally, bytes, group = std::move(group)] {
            std::size_t delivered = 0, gone = 0;
            std::vector<std::string> full;
            for (const Member& m : group) {
                lifeline::Result<lifeline::SendStatus> r = server.send(m.conn, *bytes);
                if (!r)
                    ++gone;
                else if (*r == lifeline::SendStatus::full)
                    full.push_back(m.id);
                else
                    ++delivered;
            }
            std::lock_guard lock(tally->mutex);
            tally->delivered += delivered;
            tally->gone += gone;
            tally->full.insert(tally->full.end(), full.begin(), full.end());
            if (--tally->pending == 0) tally->done.notify_all();
        };
        if (!server.post(first, std::move(job))) {
            std::lock_guard lock(tally->mutex);
            tally->gone += size;
            --tally->pending;
        }
    }
    std::unique_lock lock(tally->mutex);
    const bool complete = tally->done.wait_for(lock, kFanOutLimit, [&] { return tally->pending == 0; });
    return {{"delivered", tally->delivered}, {"full", tally->full}, {"gone", tally->gone}, {"complete", complete}};
}

void reply(httplib::Response& res, int status, const Json& body) {
    res.status = status;
    res.set_content(body.dump() + "\n", "application/json");
}

void add_routes(httplib::Server& http, Gateway& g) {
    static const std::string kName = "([A-Za-z0-9._-]{1,64})";
    http.Post("/send/" + kName, [&g](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        const std::optional<ConnectionId> conn = g.server->find(id);
        if (!conn || !g.directory.is_open(*conn)) return reply(res, 404, {{"id", id}, {"error", "not online"}});
        Json result = fan_out(*g.server, {{id, *conn}}, "direct " + req.body);
        result["id"] = id;
        reply(res, 200, result);
    });
    http.Post("/rooms/" + kName, [&g](const httplib::Request& req, httplib::Response& res) {
        const std::string room = req.matches[1];
        std::vector<Member> members = g.directory.members(room);
        const std::size_t count = members.size();
        Json result = fan_out(*g.server, std::move(members), "room " + room + " " + req.body);
        result["room"] = room;
        result["members"] = count;
        reply(res, 200, result);
    });
    http.Get("/presence/" + kName, [&g](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        const std::optional<ConnectionId> conn = g.server->find(id);
        if (conn && g.directory.is_open(*conn))
            return reply(res, 200, {{"id", id}, {"online", true}, {"rooms", g.directory.rooms_of(*conn)}});
        const std::optional<LastSeen> last = g.directory.last_seen(id);
        if (!last) return reply(res, 404, {{"id", id}, {"online", false}, {"seen", false}});
        reply(res, 200,
              {{"id", id},
               {"online", false},
               {"reason", std::string(lifeline::to_string(last->reason))},
               {"detail", last->detail},
               {"at", iso_time(last->at_ms)},
               {"at_ms", last->at_ms}});
    });
}

// ---- Command line -------------------------------------------------------------------

struct Options {
    lifeline::ServerOptions server;
    std::string http = "127.0.0.1:7080";
    std::string key;
    std::string key_file;
    std::string keepalive = "10s:2s:3";
    std::string user_timeout = "auto";
    std::string mode = "framed";
};

// "host:port" or "[v6]:port" as httplib wants it.
std::optional<std::pair<std::string, int>> split_address(const std::string& address) {
    const std::size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    std::string host = address.substr(0, colon);
    if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    try {
        const int port = std::stoi(address.substr(colon + 1));
        if (port < 0 || port > 65535) return std::nullopt;
        return std::make_pair(host, port);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

void define_options(CLI::App& app, Options& o) {
    o.server.listen = "0.0.0.0:7000";
    app.add_option("--listen", o.server.listen, "Address for clients")->capture_default_str();
    app.add_option("--mode", o.mode,
                   "framed (lifeline's protocol) or websocket (browsers: ws://HOST:PORT/any?id=ID&token=CREDENTIAL;\n"
                   "commands are text messages, pushes arrive as binary messages)")
        ->capture_default_str()
        ->check(CLI::IsMember({"framed", "websocket"}));
    app.add_option("--http", o.http, "Address of the HTTP API (keep it private: it can push to anyone)")
        ->capture_default_str();
    auto* key =
        app.add_option("--key", o.key, "Secret the credentials are HMACs with (visible in ps: prefer --key-file)");
    auto* file = app.add_option("--key-file", o.key_file, "File holding the secret (trailing newline ignored)");
    key->excludes(file);
    push_gateway::add_duration(app, "--heartbeat", o.server.heartbeat,
                               "Heartbeat interval granted to clients that ask for 0");
    push_gateway::add_duration(
        app, "--timeout", o.server.timeout,
        "Silence after which a client is dead (heartbeat_timeout); no client may ask for longer");
    app.add_option("--keepalive", o.keepalive, "Kernel keepalive IDLE:INTERVAL:COUNT, or off")->capture_default_str();
    app.add_option("--user-timeout", o.user_timeout, "TCP_USER_TIMEOUT: auto (= keepalive budget), off, or a duration")
        ->capture_default_str();
    app.add_option("--output-budget", o.server.output_budget,
                   "Bytes queued for a client before pushes to it fail; a client kept over it for\n"
                   "--slow-consumer-after while alive but not reading is closed as slow_consumer")
        ->capture_default_str();
    push_gateway::add_duration(
        app, "--slow-consumer-after", o.server.slow_consumer_after,
        "Grace over the output budget (0 = the heartbeat timeout, at most half the user timeout)")
        ->default_str("0 (auto)");
    app.add_option("--threads", o.server.threads, "Event loops")->capture_default_str()->check(CLI::Range(1, 64));
}

// The key from --key or --key-file; empty with a message on stderr when neither works.
std::string load_key(const Options& o) {
    std::string key = o.key;
    if (!o.key_file.empty()) {
        std::ifstream in(o.key_file);
        std::stringstream text;
        text << in.rdbuf();
        key = text.str();
        while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
        if (!in) std::fprintf(stderr, "push_gateway: cannot read --key-file %s\n", o.key_file.c_str());
    }
    if (key.empty()) std::fprintf(stderr, "push_gateway: a non-empty --key or --key-file is required\n");
    return key;
}

int run(Options& o) {
    // Blocked before any thread starts (threads inherit the mask), so that
    // only our signal thread sees SIGINT/SIGTERM: stop() is not async-signal-safe.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    Gateway g;
    g.key = load_key(o);
    if (g.key.empty()) return 2;
    lifeline::Result<lifeline::KeepalivePolicy> keepalive =
        lifeline::KeepalivePolicy::parse(o.keepalive, o.user_timeout);
    if (!keepalive) {
        std::fprintf(stderr, "push_gateway: --keepalive/--user-timeout: %s\n", keepalive.error().message.c_str());
        return 2;
    }
    o.server.keepalive = *keepalive;
    o.server.mode = o.mode == "websocket" ? lifeline::ServerMode::websocket : lifeline::ServerMode::framed;
    o.server.max_timeout = o.server.timeout;  // The operator's budget is the promise.
    o.server.min_interval = std::min(o.server.min_interval, o.server.heartbeat);
    auto http_address = split_address(o.http);
    if (!http_address) {
        std::fprintf(stderr, "push_gateway: --http: expected host:port, got '%s'\n", o.http.c_str());
        return 2;
    }
    auto created = lifeline::Server::create(o.server, callbacks(g));
    if (!created) {
        std::fprintf(stderr, "push_gateway: %s\n", created.error().message.c_str());
        return 1;
    }
    g.server = created->get();
    httplib::Server http;
    http.set_payload_max_length(o.server.max_body_size - kPrefixRoom);  // A push is one DATA frame.
    add_routes(http, g);
    // Port 0: any free port, and the line below says which.
    const int http_port = http_address->second == 0 ? http.bind_to_any_port(http_address->first)
                          : http.bind_to_port(http_address->first, http_address->second) ? http_address->second
                                                                                         : -1;
    if (http_port < 0) {
        std::fprintf(stderr, "push_gateway: --http: cannot listen on %s\n", o.http.c_str());
        return 1;
    }
    const std::string http_bound = o.http.substr(0, o.http.rfind(':') + 1) + std::to_string(http_port);
    g.out.write({{"event", "listening"}, {"listen", g.server->local_address()}, {"http", http_bound}});
    std::atomic<bool> http_ended{false};
    std::thread http_thread([&] {
        http.listen_after_bind();
        http_ended = true;
    });
    // stop() before listen_after_bind() is running would be lost (httplib
    // ignores it), and the HTTP thread would never end: wait for it to run.
    while (!http.is_running() && !http_ended) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::thread signal_thread([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        http.stop();  // First: no handler may wait on loops that are going away.
        g.server->stop();
    });
    g.server->run();
    // run() also returns without a signal if the server fails: wake the signal thread.
    pthread_kill(signal_thread.native_handle(), SIGTERM);
    signal_thread.join();
    http_thread.join();
    return 0;
}

}  // namespace
}  // namespace push_gateway

int main(int argc, char** argv) {
    CLI::App app(
        "push_gateway: a push/chat gateway on lifeline. Clients connect with the framed protocol,\n"
        "id + credential (hex HMAC-SHA256(key, id)) in HELLO, and send text commands as DATA\n"
        "(--mode websocket: browsers, with ?id=ID&token=CREDENTIAL, commands as text messages):\n"
        "  join <room> | leave <room> | rooms | help\n"
        "The HTTP API pushes messages and answers presence:\n"
        "  POST /send/{id}      body = message for one client    (DATA \"direct <body>\")\n"
        "  POST /rooms/{room}   body = message for every member  (DATA \"room <room> <body>\")\n"
        "  GET  /presence/{id}  online, or the last disconnect reason and when\n"
        "One JSON line per close (id, rooms, reason) and per rejected HELLO on stdout.\n"
        "Wrong credential: CLOSE 1001; bad id: CLOSE 1002; a live id without its resume token:\n"
        "CLOSE id_in_use (the holder stays). See examples/push_gateway/README.md.");
    push_gateway::Options options;
    push_gateway::define_options(app, options);
    CLI11_PARSE(app, argc, argv);
    return push_gateway::run(options);
}
