// push_clients: many push_gateway clients in one process, one lifeline::Client
// (and one thread) each, for the end-to-end test and for trying the gateway
// by hand. Each client joins its room, counts what it is pushed (distinct,
// duplicated, meant for another room) and reports on a fence message, so the
// test can check that nothing was lost or duplicated without a line per push.
//
// Clients file: one client per line, "<id> <credential> <room>" ("-" = no room).
// Output, JSON lines on stdout:
//   {"event":"joined","id":..,"room":..}           the gateway said "ok join"
//   {"event":"fence","id":..,"fence":..,"messages":N,"duplicates":N,"foreign":N}
//                                                   a push whose body is "fence <tag>"
//   {"event":"reply","id":..,"text":..}            any other reply ("error ...")
//   {"event":"down"|"failed","id":..,"reason":..,"message":..}
//   {"event":"stopped_reading"}                    after SIGUSR1
// Stdin: "<id> <text>" lines are sent as DATA from that client (replies show as "reply").
// SIGUSR1: every client stops reading its socket (lifeline::testing::stop_reading),
// a hung reader for the gateway to judge. SIGINT/SIGTERM: stop and exit 0.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "duration_option.hpp"
#include "lifeline/client.hpp"
#include "lifeline/testing.hpp"

namespace {

using Json = nlohmann::json;
using lifeline::Duration;

std::mutex output_mutex;

// One line at once from any client's thread. Blocking here only delays that
// client's own loop: the reader of our stdout is the test, which keeps up.
void emit(const Json& line) {
    const std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    std::lock_guard lock(output_mutex);
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
}

// What one client saw. Touched only on its Client's loop thread.
struct Tracker {
    std::string id, credential, room;
    std::unique_ptr<lifeline::Client> client;
    std::set<std::string> seen;
    std::size_t duplicates = 0;
    std::size_t foreign = 0;

    void on_message(std::string_view text) {
        if (text.starts_with("ok join "))
            return emit({{"event", "joined"}, {"id", id}, {"room", std::string(text.substr(8))}});
        std::string_view body;
        if (text.starts_with("direct ")) {
            body = text.substr(7);
        } else if (text.starts_with("room ")) {
            const std::string_view rest = text.substr(5);
            const std::size_t space = rest.find(' ');
            if (rest.substr(0, space) != room) ++foreign;
            body = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
        } else {
            return emit({{"event", "reply"}, {"id", id}, {"text", std::string(text)}});
        }
        if (body.starts_with("fence ")) {
            return emit({{"event", "fence"},
                         {"id", id},
                         {"fence", std::string(body.substr(6))},
                         {"messages", seen.size()},
                         {"duplicates", duplicates},
                         {"foreign", foreign}});
        }
        // Keyed by the whole text: a direct and a room push may share a body.
        if (!seen.emplace(text).second) ++duplicates;
    }
};

struct Options {
    lifeline::ClientOptions client;
    std::string clients_file;
    std::string keepalive = "10s:2s:3";
    std::string user_timeout = "auto";
};

std::vector<std::unique_ptr<Tracker>> read_clients(const std::string& path) {
    std::vector<std::unique_ptr<Tracker>> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        auto t = std::make_unique<Tracker>();
        std::istringstream fields(line);
        if (!(fields >> t->id >> t->credential >> t->room)) continue;
        if (t->room == "-") t->room.clear();
        out.push_back(std::move(t));
    }
    return out;
}

lifeline::ClientCallbacks callbacks_for(Tracker& t) {
    lifeline::ClientCallbacks c;
    c.on_connect = [&t](int connection) {
        if (t.room.empty()) return;
        const std::string join = "join " + t.room;
        t.client->send(connection, {reinterpret_cast<const std::uint8_t*>(join.data()), join.size()});
    };
    c.on_message = [&t](int, std::span<const std::uint8_t> payload) {
        t.on_message({reinterpret_cast<const char*>(payload.data()), payload.size()});
    };
    c.on_down = [&t](int, lifeline::DisconnectReason reason) {
        emit({{"event", "down"}, {"id", t.id}, {"reason", std::string(lifeline::to_string(reason))}});
    };
    c.on_connect_failed = [&t](int, lifeline::DisconnectReason reason, const std::string& message) {
        emit({{"event", "failed"},
              {"id", t.id},
              {"reason", std::string(lifeline::to_string(reason))},
              {"message", message}});
    };
    return c;
}

int run(Options& o) {
    sigset_t signals;
    sigemptyset(&signals);
    for (const int sig : {SIGINT, SIGTERM, SIGUSR1}) sigaddset(&signals, sig);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // Before any thread: they inherit it.

    lifeline::Result<lifeline::KeepalivePolicy> keepalive =
        lifeline::KeepalivePolicy::parse(o.keepalive, o.user_timeout);
    if (!keepalive) {
        std::fprintf(stderr, "push_clients: --keepalive/--user-timeout: %s\n", keepalive.error().message.c_str());
        return 2;
    }
    o.client.keepalive = *keepalive;
    std::vector<std::unique_ptr<Tracker>> trackers = read_clients(o.clients_file);
    if (trackers.empty()) {
        std::fprintf(stderr, "push_clients: no clients in '%s'\n", o.clients_file.c_str());
        return 2;
    }
    for (auto& t : trackers) {
        lifeline::ClientOptions options = o.client;
        options.id = t->id;
        options.credential = t->credential;
        auto created = lifeline::Client::create(options, callbacks_for(*t));
        if (!created) {
            std::fprintf(stderr, "push_clients: %s: %s\n", t->id.c_str(), created.error().message.c_str());
            return 2;
        }
        t->client = std::move(*created);
    }
    std::vector<std::thread> runners;
    for (auto& t : trackers) runners.emplace_back([&t] { t->client->run(); });
    std::thread signal_thread([&] {
        while (true) {
            int sig = 0;
            if (sigwait(&signals, &sig) != 0) return;
            if (sig == SIGUSR1) {
                for (auto& t : trackers) lifeline::testing::stop_reading(*t->client);
                emit({{"event", "stopped_reading"}});
                continue;
            }
            for (auto& t : trackers) t->client->stop();
            return;
        }
    });
    // Typed commands: "<id> <text>" lines on stdin become DATA from that
    // client (how the test sends bad commands). Detached: it may sit in a
    // read until we exit.
    std::thread([&trackers] {
        for (std::string line; std::getline(std::cin, line);) {
            const std::size_t space = line.find(' ');
            const std::string id = line.substr(0, space);
            const std::string text = space == std::string::npos ? "" : line.substr(space + 1);
            for (auto& t : trackers)
                if (t->id == id) t->client->send(0, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
        }
    }).detach();
    for (std::thread& r : runners) r.join();
    // Every client ended on its own (rejected, or down without reconnect):
    // release the signal thread, which stops nothing more.
    pthread_kill(signal_thread.native_handle(), SIGTERM);
    signal_thread.join();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app(
        "push_clients: run push_gateway clients from a file of '<id> <credential> <room>' lines, one\n"
        "lifeline::Client each; each joins its room and reports, as JSON lines, joins, replies, fences\n"
        "(with counts of distinct and duplicated pushes) and disconnects. SIGUSR1: every client stops\n"
        "reading (a hung reader). SIGINT/SIGTERM: stop.");
    Options o;
    o.client.server = "127.0.0.1:7000";
    app.add_option("--server", o.client.server, "The gateway's client address")->capture_default_str();
    app.add_option("--clients", o.clients_file, "File of '<id> <credential> <room>' lines")->required();
    push_gateway::add_duration(app, "--heartbeat", o.client.heartbeat, "Heartbeat interval to ask for");
    push_gateway::add_duration(app, "--timeout", o.client.timeout, "Timeout to ask for (the gateway may clamp it)");
    push_gateway::add_duration(app, "--connect-timeout", o.client.connect_timeout, "TCP connect + WELCOME");
    app.add_option("--keepalive", o.keepalive, "Kernel keepalive IDLE:INTERVAL:COUNT, or off")->capture_default_str();
    app.add_option("--user-timeout", o.user_timeout, "TCP_USER_TIMEOUT: auto, off, or a duration")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    return run(o);
}
