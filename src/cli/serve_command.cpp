// `lifeline serve`: the server, events on stdout, diagnostics on stderr.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.hpp"
#include "cli/flag_names.hpp"
#include "cli/serve_workers.hpp"
#include "cli/stop_signals.hpp"
#include "lifeline/server.hpp"
#include "lifeline/sys/detection_budget.hpp"
#include "lifeline/testing.hpp"
#include "runtime/line_writer.hpp"

namespace lifeline::cli {

namespace {

struct ServeOptions {
    ServerOptions server;
    testing::ServerFaults faults;  // --push
    int workers = 1;
    std::string mode = "framed";
    std::string io = "epoll";
    std::string keepalive = "10s:2s:3";
    std::string user_timeout = "auto";
    std::string log = "json";
    Duration detect_within;
};

// --keepalive/--user-timeout; `system` sets s.keepalive_from_outside and
// leaves the sockets' options alone, so a --user-timeout with it is an error.
Result<KeepalivePolicy> parse_keepalive(const ServeOptions& o, ServerOptions& s) {
    s.keepalive_from_outside = o.keepalive == "system";
    if (!s.keepalive_from_outside) return KeepalivePolicy::parse(o.keepalive, o.user_timeout);
    if (o.user_timeout != "auto" && o.user_timeout != "off")
        return Error{"--keepalive system sets no socket option, so it takes no --user-timeout (got " + o.user_timeout +
                     ")"};
    return KeepalivePolicy::disabled();
}

int run_serve(ServeOptions& o, const CLI::App& app) {
    // The choices CLI11 checked as strings, before anything validates them.
    o.server.mode = o.mode == "raw"         ? ServerMode::raw
                    : o.mode == "websocket" ? ServerMode::websocket
                                            : ServerMode::framed;
    o.server.io = o.io == "uring" ? IoBackend::uring : IoBackend::epoll;
    if (o.workers > 1) {
        // Check what every worker would check, once, before starting any:
        // a bad flag must fail here, not restart N workers forever.
        if (o.log != "json") {
            fmt::print(stderr, "lifeline serve: --workers needs --log json (the supervisor merges JSON events)\n");
            return 2;
        }
        ServerOptions check = o.server;
        if (o.detect_within <= Duration::zero()) {
            Result<KeepalivePolicy> k = parse_keepalive(o, check);
            if (!k) {
                fmt::print(stderr, "lifeline serve: {}\n",
                           cli::with_flag_names(k.error().message, cli::kKeepaliveFlags));
                return 2;
            }
            check.keepalive = *k;
            if (auto v = check.validate(); !v) {
                fmt::print(stderr, "lifeline serve: {}\n", cli::with_flag_names(v.error().message, cli::kServeFlags));
                return 2;
            }
        }
        WorkerSupervisorOptions w;
        w.workers = o.workers;
        w.worker_args = rebuild_arguments(app, {"--workers", "--listen", "--http", "--gateway"});
        w.presence_gateway = o.server.presence_redis.empty() ? "" : o.server.presence_gateway;
        w.redis_presence = !o.server.presence_redis.empty();
        w.listen = o.server.listen;
        w.http = o.server.http;
        return run_worker_supervisor(std::move(w));
    }
    StopSignals signals;  // First: blocks SIGINT/SIGTERM before any thread starts.
    ServerOptions& s = o.server;
    std::optional<KeepalivePolicy> planned_keepalive;
    if (o.detect_within > Duration::zero()) {
        Result<DetectionPlan> plan = policy_for_budget(o.detect_within);
        if (!plan) {
            fmt::print(stderr, "lifeline serve: --detect-within: {}\n", plan.error().message);
            return 2;
        }
        // Explicit flags override the plan.
        if (app.count("--heartbeat") == 0) s.heartbeat = plan->heartbeat_interval;
        if (app.count("--timeout") == 0) s.timeout = plan->heartbeat_timeout;
        // The target is a promise: no client may negotiate a longer timeout.
        if (app.count("--max-timeout") == 0) s.max_timeout = plan->heartbeat_timeout;
        if (app.count("--keepalive") == 0) planned_keepalive = plan->keepalive;
        if (app.count("--min-interval") == 0) s.min_interval = std::min(s.min_interval, s.heartbeat);
        fmt::print(stderr, "lifeline serve: --detect-within {}:\n", to_string(o.detect_within));
        for (const auto& line : plan->explanation) fmt::print(stderr, "  {}\n", line);
    }
    Result<KeepalivePolicy> keepalive = parse_keepalive(o, s);
    if (!keepalive) {
        fmt::print(stderr, "lifeline serve: {}\n",
                   cli::with_flag_names(keepalive.error().message, cli::kKeepaliveFlags));
        return 2;
    }
    s.keepalive = *keepalive;
    if (planned_keepalive) {
        const UserTimeout user_timeout = s.keepalive.user_timeout;
        s.keepalive = *planned_keepalive;
        s.keepalive.user_timeout = user_timeout;
    }

    // Events leave through a writer thread: a slow reader of our stdout must
    // never stall an event loop (and with it every peer's heartbeats).
    runtime::AsyncLineWriter out(STDOUT_FILENO);
    const bool json = o.log == "json";
    ServerCallbacks callbacks;
    callbacks.on_event = [&out, json](const Event& e) { out.write(json ? to_json_line(e) : to_text_line(e)); };

    Result<std::unique_ptr<Server>> server = testing::create_server(s, callbacks, o.faults);
    if (!server) {
        fmt::print(stderr, "lifeline serve: {}\n", cli::with_flag_names(server.error().message, cli::kServeFlags));
        return 1;
    }
    fmt::print(
        stderr,
        "lifeline serve: {} mode on {} ({}), heartbeat {} / timeout {} (min interval {}), keepalive {}, {} "
        "thread{}, {}{}{}\n",
        o.mode, (*server)->local_address(), o.io, to_string(s.heartbeat), to_string(s.timeout),
        to_string(s.min_interval), s.keepalive_from_outside ? "system (no option set)" : s.keepalive.to_string(),
        s.threads, s.threads == 1 ? "" : "s",
        s.coalesce == Duration::zero() ? "wake-ups not coalesced" : "wake-ups coalesced over " + to_string(s.coalesce),
        s.http.empty() ? "" : ", http on " + s.http,
        o.faults.push_rate == 0 ? "" : ", pushing " + std::to_string(o.faults.push_rate) + " B/s to every client");
    Server* raw = server->get();
    signals.on_signal([raw] { raw->stop(); });
    raw->run();
    signals.finish();
    return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<ServeOptions>();
    ServerOptions& s = opts->server;
    CLI::App* sub = app.add_subcommand(
        "serve",
        "Accept long-lived TCP connections and report, as JSON lines on stdout, when a peer is gone\n"
        "and why. framed mode speaks docs/PROTOCOL.md (heartbeats); raw mode speaks nothing, so any\n"
        "TCP client works (nc), and relies on kernel keepalive + TCP_USER_TIMEOUT (+ --idle-timeout).\n\n"
        "--detect-within DURATION derives every knob from one target: heartbeat timeout = target,\n"
        "heartbeat interval = target / 3, kernel keepalive as `lifeline sysctl advise --target`\n"
        "computes it (half the budget idle, three probes), user timeout auto, and no client may negotiate\n"
        "a timeout longer than the target. Explicit flags override.\n\n"
        "Events: listening, connect, hello, dead, closed, error, stall. SIGINT/SIGTERM: stop accepting,\n"
        "send CLOSE to framed peers, flush, exit 0 within 2 s.");
    sub->add_option("--listen", s.listen, "Address to listen on")->capture_default_str();
    sub->add_option("--mode", opts->mode,
                    "framed (heartbeat protocol), raw (any TCP client) or websocket (RFC 6455: browsers and any\n"
                    "WebSocket client; the server pings every --heartbeat when quiet and declares a client silent\n"
                    "for --timeout dead; ws://HOST:PORT/PATH?id=NAME names the client)")
        ->capture_default_str()
        ->check(CLI::IsMember({"framed", "raw", "websocket"}));
    sub->add_option("--tls-cert", s.tls_cert,
                    "TLS: PEM certificate chain (with --tls-key; any mode, wss:// in websocket mode; checked at start)")
        ->check(CLI::ExistingFile);
    sub->add_option("--tls-key", s.tls_key, "TLS: PEM private key matching --tls-cert")->check(CLI::ExistingFile);
    add_duration_option(*sub, "--detect-within", opts->detect_within, "Derive every knob from one detection target");
    add_duration_option(*sub, "--heartbeat", s.heartbeat, "Heartbeat interval granted to clients that ask for 0");
    add_duration_option(*sub, "--timeout", s.timeout, "Silence after which a peer is declared dead");
    add_duration_option(*sub, "--min-interval", s.min_interval,
                        "Fastest heartbeat a client may ask for; pinging faster gets CLOSE too_many_pings");
    add_duration_option(*sub, "--max-timeout", s.max_timeout,
                        "Longest timeout a client may ask for (with --detect-within: the target)");
    add_duration_option(*sub, "--handshake-timeout", s.handshake_timeout, "HELLO must arrive within this of accept");
    add_duration_option(*sub, "--idle-timeout", s.idle_timeout,
                        "raw mode: close after this long without a byte (0 = off)");
    sub->add_option("--keepalive", opts->keepalive,
                    "Kernel keepalive IDLE:INTERVAL:COUNT, off, or system (set no keepalive option and no user\n"
                    "timeout: sockets keep what the kernel or an outside tool, such as `lifeline run` or\n"
                    "`protect`, gives them)")
        ->capture_default_str();
    sub->add_option("--user-timeout", opts->user_timeout,
                    "TCP_USER_TIMEOUT: auto (= keepalive budget), off, or a duration")
        ->capture_default_str();
    sub->add_flag("--server-pings", s.server_pings, "The server also PINGs quiet clients");
    sub->add_option("--workers", opts->workers,
                    "Worker processes, each with its own loops and SO_REUSEPORT listener, under a supervisor\n"
                    "that restarts a crashed worker, merges events (adding \"worker\") and sums /metrics.\n"
                    "For more connections than one process may hold descriptors for")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    sub->add_option("--io", opts->io,
                    "Connection I/O: epoll (portable) or uring (io_uring, Linux 6.1+: a multishot receive per\n"
                    "connection and queued sends, one system call per loop turn instead of two per heartbeat;\n"
                    "fails at start where the kernel refuses io_uring)")
        ->capture_default_str()
        ->check(CLI::IsMember({"epoll", "uring"}));
    add_duration_option(*sub, "--tick", s.tick,
                        "Timer wheel resolution: a silent peer is declared dead at most this long after its\n"
                        "timeout (plus scheduling). Finer costs wake-ups only while timers are expiring (healthy\n"
                        "peers push their deadlines ahead and never fire); at most 1s");
    add_duration_option(*sub, "--coalesce", s.coalesce,
                        "Wake-up coalescing: while every wake-up of a loop finds more than one event ready, wait\n"
                        "at least this long between wake-ups, so one serves many heartbeats (less CPU per\n"
                        "heartbeat when busy; adds at most this much latency, only then; timers stay on time).\n"
                        "0 = off (wake at once, for latency-bound request/response traffic); at most 100ms");
    sub->add_option("--threads", s.threads, "Event loops, each with its own SO_REUSEPORT listener")
        ->capture_default_str()
        ->check(CLI::Range(1, 256));
    sub->add_option("--output-budget", s.output_budget,
                    "Bytes queued for a client before the server stops reading from it (and echoing or pushing\n"
                    "to it) until half has drained. A client that keeps more queued for --slow-consumer-after\n"
                    "is judged by the kernel's view (tcp_info): alive behind a zero window = slow_consumer; a\n"
                    "dead path (data retransmitted, nothing acknowledged) is left to the user timeout")
        ->capture_default_str();
    add_duration_option(*sub, "--slow-consumer-after", s.slow_consumer_after,
                        "How long a client may keep more than --output-budget queued (0 = the detection budget\n"
                        "in force: the heartbeat timeout, raw: --idle-timeout or the keepalive budget; at most\n"
                        "half the user timeout, so that the verdict is ours, not the kernel's abort)")
        ->default_str("0 (auto)");
    sub->add_option_function<std::string>(
           "--push",
           [opts](const std::string& text) {
               const Result<std::uint64_t> rate = testing::parse_byte_rate(text);
               if (!rate) throw CLI::ValidationError("--push", rate.error().message);
               if (*rate > testing::kMaxPushRate)
                   throw CLI::ValidationError("--push", "must be at most 1G (1 GiB/s), got " + text);
               opts->faults.push_rate = *rate;
           },
           "Stream filler to every client at this rate (bytes per second: 4096, 64K, 1M; K/M/G are\n"
           "binary): a stand-in for a push gateway's traffic. framed: DATA frames after the HELLO; raw:\n"
           "plain bytes from accept. A client that stops reading is closed with slow_consumer once\n"
           "--output-budget is used up. Pushed bytes are traffic out, never proof the client is alive.")
        ->type_name("RATE")
        ->default_str("0 (off)");
    sub->add_option("--max-connections", s.max_connections, "Connections beyond this are closed at accept")
        ->capture_default_str();
    sub->add_option("--http", s.http, "Serve /metrics and /connections on this address (e.g. 127.0.0.1:9100)");
    sub->add_option("--log", opts->log, "Event format: json (one object per line) or text")
        ->capture_default_str()
        ->check(CLI::IsMember({"json", "text"}));
    sub->add_flag("--echo", s.echo, "Echo DATA (framed) or bytes (raw) back");
    sub->add_flag("!--no-presence", s.presence,
                  "Keep no presence of client ids (no GET /presence, no offline events): saves a record per id");
    sub->add_option("--presence", s.presence_redis,
                    "Publish presence to Redis >= 7 (redis://HOST:PORT[/DB]) for a fleet of gateways: fenced by\n"
                    "epoch, offline events on a stream, a dead gateway's sessions ended by the others\n"
                    "(gateway_lost). Redis away: detection is unaffected, updates are buffered and resynced.\n"
                    "A Redis Cluster is found from any one of its nodes (CLUSTER SLOTS; DB must be 0)")
        ->type_name("URL");
    sub->add_option("--gateway", s.presence_gateway,
                    "This gateway's name in the fleet (default HOSTNAME:PORT; --workers adds /wK)")
        ->type_name("NAME");
    add_duration_option(*sub, "--presence-ttl", s.presence_ttl,
                        "TTL of each live presence entry and of the gateway's heartbeat key (refreshed every ttl/3)");
    add_duration_option(*sub, "--offline-retention", s.presence_retention,
                        "How long Redis keeps an offline record (online: false, last reason)");
    sub->add_option("--presence-stream", s.presence_stream, "The Redis stream of online/offline events")
        ->capture_default_str();
    sub->callback([opts, &run, sub] { run = [opts, sub] { return run_serve(*opts, *sub); }; });
}

}  // namespace lifeline::cli
