// `lifeline connect`: a framed (or raw) client; events on stdout, stdin lines as DATA.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "cli/flag_names.hpp"
#include "cli/stop_signals.hpp"
#include "lifeline/client.hpp"
#include "lifeline/testing.hpp"
#include "runtime/line_writer.hpp"

namespace lifeline::cli {

namespace {

struct ConnectOptions {
    ClientOptions client;
    std::string mode;  // "" = from the server argument: ws:// and wss:// are websocket, else framed.
    std::string keepalive = "10s:2s:3";
    std::string user_timeout = "auto";
    std::string log = "json";
    bool stdin_data = true;
    bool stop_reading_on_sigusr1 = false;
};

// "ws://HOST:PORT/path?query" and "wss://...": the WebSocket mode (wss: with
// TLS), the path as the request target. "HOST:PORT" is left as it is.
Result<void> apply_server_url(ConnectOptions& o) {
    ClientOptions& c = o.client;
    const std::string url = c.server;
    const bool wss = url.rfind("wss://", 0) == 0;
    if (!wss && url.rfind("ws://", 0) != 0) {
        if (url.find("://") != std::string::npos)
            return Error{"server " + url + ": only ws:// and wss:// URLs (or HOST:PORT)"};
        c.mode = o.mode == "raw" ? ClientMode::raw : o.mode == "websocket" ? ClientMode::websocket : ClientMode::framed;
        return {};
    }
    if (!o.mode.empty() && o.mode != "websocket")
        return Error{"server " + url + " is a WebSocket URL, but --mode is " + o.mode};
    const std::string rest = url.substr(wss ? 6 : 5);
    const std::size_t slash = rest.find_first_of("/?");
    c.server = rest.substr(0, slash);
    if (c.server.find(':') == std::string::npos) c.server += wss ? ":443" : ":80";
    c.websocket_path = slash == std::string::npos ? "/" : rest.substr(slash);
    if (c.websocket_path.front() == '?') c.websocket_path.insert(0, "/");
    c.mode = ClientMode::websocket;
    c.tls = c.tls || wss;
    return {};
}

int run_connect(ConnectOptions& o) {
    // First: blocks SIGINT/SIGTERM (and SIGUSR1 when asked for) before any
    // thread starts. Without the flag SIGUSR1 keeps its default action.
    StopSignals signals(o.stop_reading_on_sigusr1 ? std::vector<int>{SIGUSR1} : std::vector<int>{});
    ClientOptions& c = o.client;
    if (auto u = apply_server_url(o); !u) {
        fmt::print(stderr, "lifeline connect: {}\n", u.error().message);
        return 2;
    }
    Result<KeepalivePolicy> keepalive = KeepalivePolicy::parse(o.keepalive, o.user_timeout);
    if (!keepalive) {
        fmt::print(stderr, "lifeline connect: {}\n",
                   cli::with_flag_names(keepalive.error().message, cli::kKeepaliveFlags));
        return 2;
    }
    c.keepalive = *keepalive;

    runtime::AsyncLineWriter out(STDOUT_FILENO);  // Never block the loop on a slow stdout reader.
    const bool json = o.log == "json";
    const bool rtt_events = c.count == 1;  // One line per heartbeat is useful for one connection, noise for many.
    std::atomic<bool> failed{false};
    ClientCallbacks callbacks;
    callbacks.on_event = [&](const Event& e) {
        if (e.kind == EventKind::rtt && !rtt_events) return;
        out.write(json ? to_json_line(e) : to_text_line(e));
    };
    callbacks.on_down = [&](int, DisconnectReason r) {
        if (r != DisconnectReason::shutdown && r != DisconnectReason::local_close) failed.store(true);
    };

    Result<std::unique_ptr<Client>> client = Client::create(c, callbacks);
    if (!client) {
        fmt::print(stderr, "lifeline connect: {}\n", cli::with_flag_names(client.error().message, cli::kConnectFlags));
        return 2;
    }
    Client* raw = client->get();
    // The only extra signal is SIGUSR1, and only with --stop-reading-on-sigusr1.
    const char* still = c.mode != ClientMode::raw ? "; still sending heartbeats, no longer judging the server" : "";
    signals.on_signal([raw] { raw->stop(); },
                      [raw, still, stopped = false](int) mutable {
                          if (stopped) return;  // Sticky and idempotent: one line is enough.
                          stopped = true;
                          testing::stop_reading(*raw);
                          fmt::print(stderr, "lifeline connect: SIGUSR1: stopped reading (fault injection){}\n", still);
                      });
    if (o.stdin_data && c.count == 1) {
        // Detached: a blocking read of stdin cannot be interrupted portably, and
        // the process exits when run() returns anyway. Raw mode sends each line
        // with its newline, as the bytes were typed.
        const bool with_newline = c.mode == ClientMode::raw;
        std::thread([raw, with_newline] {
            std::string line;
            while (std::getline(std::cin, line)) {
                // A last line cut off by EOF had no newline: do not invent one.
                if (with_newline && !std::cin.eof()) line += '\n';
                raw->send(0, {reinterpret_cast<const std::uint8_t*>(line.data()), line.size()});
            }
        }).detach();
    }
    raw->run();
    signals.finish();
    return signals.received() || !failed.load() ? 0 : 1;
}

}  // namespace

void add_connect_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<ConnectOptions>();
    ClientOptions& c = opts->client;
    CLI::App* sub = app.add_subcommand(
        "connect",
        "Connect to a `lifeline serve` (framed mode), send HELLO, keep the connection alive with\n"
        "heartbeats, and report events as JSON lines: connect, hello, rtt, dead (the server went\n"
        "silent), closed, error. With --reconnect, come back with exponential backoff and full\n"
        "jitter. With --count 1, each line read from stdin is sent as one DATA frame.\n"
        "--mode raw is a plain TCP client for `lifeline serve --mode raw`: no HELLO, no heartbeats,\n"
        "only kernel keepalive and TCP_USER_TIMEOUT notice a dead server; stdin lines are sent as\n"
        "they are, newline included. The client judges the server by the longer of its --timeout\n"
        "and the timeout the server granted.\n"
        "A ws:// or wss:// URL (ws://HOST:PORT/path) speaks WebSocket to `lifeline serve --mode\n"
        "websocket`: the id, credential and resume token go in the upgrade's query, heartbeats are\n"
        "WebSocket pings, the server's close code gives the reason. wss:// and --tls run over TLS,\n"
        "verifying the server's certificate (--tls-ca, else the system's trust store).\n"
        "Exit status: 0 when stopped by SIGINT/SIGTERM or closed cleanly, 1 if a connection died.");
    sub->add_option("server", c.server, "HOST:PORT of the server, or a ws:// or wss:// URL")->required();
    sub->add_option("--mode", opts->mode,
                    "framed (heartbeat protocol, the default), raw (plain TCP, kernel detection only) or "
                    "websocket (the default for ws:// and wss:// URLs)")
        ->check(CLI::IsMember({"framed", "raw", "websocket"}));
    sub->add_flag("--tls", c.tls, "Run over TLS (implied by wss://) and verify the server's certificate");
    sub->add_option("--tls-ca", c.tls_ca,
                    "PEM file of the CA (or self-signed certificate) to trust; "
                    "default: the system's trust store")
        ->check(CLI::ExistingFile);
    sub->add_option("--tls-server-name", c.tls_server_name,
                    "Name (or IP address) the certificate must be for; default: the server's host");
    sub->add_option("--id", c.id, "Client id sent in HELLO (with --count, suffixed -0, -1, ...)");
    sub->add_option("--credential", c.credential,
                    "Sent in HELLO for the server's admission check (at most 255 bytes). With --id and "
                    "--reconnect, the resume token from the last WELCOME is presented too, so the server "
                    "replaces our stale connection instead of refusing the id")
        ->check([](const std::string& v) { return v.size() > 255 ? std::string("at most 255 bytes") : std::string(); });
    add_duration_option(*sub, "--heartbeat", c.heartbeat, "Requested heartbeat interval");
    add_duration_option(*sub, "--timeout", c.timeout,
                        "Requested timeout: the server is dead after this much silence (kept even if the server "
                        "grants less)");
    sub->add_option("--keepalive", opts->keepalive, "Kernel keepalive IDLE:INTERVAL:COUNT, or off")
        ->capture_default_str();
    sub->add_option("--user-timeout", opts->user_timeout, "TCP_USER_TIMEOUT: auto, off, or a duration")
        ->capture_default_str();
    sub->add_flag("--reconnect", c.reconnect, "Reconnect after the connection ends");
    add_duration_option(*sub, "--backoff-initial", c.backoff_initial,
                        "First reconnect delay cap (doubles per attempt)");
    add_duration_option(*sub, "--backoff-max", c.backoff_max, "Largest reconnect delay cap");
    add_duration_option(*sub, "--connect-timeout", c.connect_timeout,
                        "TCP connect plus WELCOME (raw: the TCP connect) must finish within this");
    sub->add_option("--count", c.count, "Parallel connections")->capture_default_str()->check(CLI::Range(1, 20000));
    sub->add_flag("!--no-stdin", opts->stdin_data, "Do not send stdin lines as DATA");
    sub->add_option("--log", opts->log, "Event format: json or text")
        ->capture_default_str()
        ->check(CLI::IsMember({"json", "text"}));
    sub->add_flag("--stop-reading-on-sigusr1", opts->stop_reading_on_sigusr1,
                  "On SIGUSR1, simulate a hung reader: stop reading every socket (the server sees a zero "
                  "window) and stop judging the server, but keep sending heartbeats")
        ->group("Fault injection (for `lifeline lab`)");
    sub->callback([opts, &run] { run = [opts] { return run_connect(*opts); }; });
}

}  // namespace lifeline::cli
