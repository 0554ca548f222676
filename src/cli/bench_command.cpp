// `lifeline bench`: the load generator (src/loadgen) from the command line.
// Past one process's descriptor limit it runs several copies of itself
// (shards), each on the same monotonic timeline, and merges their results.
#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/self_process.hpp"
#include "loadgen/bench_run.hpp"

namespace lifeline::cli {

namespace {

// Descriptors a shard keeps for itself (stdio, epoll, eventfds, pipes).
constexpr int kReservedDescriptors = 200;

struct BenchOptions {
    std::string server;
    std::string protocol = "framed";
    std::string arrivals = "uniform";
    std::uint64_t seed = 1;
    bool send_id = true;
    int connections = 10000;
    int processes = 0;  // 0 = as many as the descriptor limit needs.
    int threads = 1;
    double ramp = 5000;
    Duration heartbeat = Duration::seconds(1);
    Duration timeout = Duration::seconds(3);
    Duration hold = Duration::seconds(30);
    double silence = 0;
    Duration silence_after = Duration::seconds(5);
    Duration server_budget;
    std::string sources = "auto";
    bool json = false;
    bool reconnect = false;
    bool tls = false;
    std::string tls_ca;
    std::string shard;  // Internal: "K/P@EPOCH_NS", set on shard processes.
};

std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Raises the soft descriptor limit to the hard one; returns the new soft limit.
rlim_t raise_descriptor_limit() {
    rlimit l{};
    ::getrlimit(RLIMIT_NOFILE, &l);
    l.rlim_cur = l.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &l);
    ::getrlimit(RLIMIT_NOFILE, &l);
    return l.rlim_cur;
}

Result<loadgen::Protocol> parse_protocol(const std::string& name) {
    if (name == "framed") return loadgen::Protocol::framed;
    if (name == "echo") return loadgen::Protocol::echo;
    if (name == "mqtt") return loadgen::Protocol::mqtt;
    if (name == "websocket") return loadgen::Protocol::websocket;
    return Error{"--protocol: expected framed, websocket, echo or mqtt, got '" + name + "'"};
}

Result<std::vector<std::string>> source_addresses(const BenchOptions& o) {
    if (o.sources == "none") return std::vector<std::string>{};
    if (o.sources == "auto") {
        // Spread over loopback addresses so N can pass one source's ephemeral ports.
        if (o.server.rfind("127.", 0) != 0) return std::vector<std::string>{};
        return loadgen::expand_address_range("127.0.0.2-127.0.0.254");
    }
    return loadgen::expand_address_range(o.sources);
}

// What stopped the ramp, in kernel terms, when we can tell.
std::string kernel_hint(const std::string& error) {
    if (error.find("Cannot assign requested address") != std::string::npos)
        return "out of source ports: widen net.ipv4.ip_local_port_range or pass more --sources";
    if (error.find("Too many open files") != std::string::npos)
        return "descriptor limit: more --processes, or raise fs.nr_open and the hard RLIMIT_NOFILE";
    if (error.find("refused") != std::string::npos || error.find("did not complete") != std::string::npos ||
        error.find("no WELCOME") != std::string::npos)
        return "the server's accept queue overflowed or it is not running: raise net.core.somaxconn "
               "(and the server's backlog) or lower --ramp";
    return "";
}

// The shard's slice of the plan: connections, rate and where its sources start.
loadgen::BenchPlan shard_plan(const BenchOptions& o, loadgen::Protocol protocol,
                              const std::vector<std::string>& sources, int shard, int shards, std::int64_t epoch_ns) {
    loadgen::BenchPlan p;
    p.load.server = o.server;
    p.load.protocol = protocol;
    p.load.connections = o.connections / shards + (shard < o.connections % shards ? 1 : 0);
    p.load.ramp_per_second = o.ramp / shards;
    p.load.heartbeat = o.heartbeat;
    p.load.timeout = o.timeout;
    p.load.arrivals = o.arrivals == "burst" ? loadgen::Arrivals::burst : loadgen::Arrivals::uniform;
    // Distinct per shard (and, in run_shard, per thread): distinct phases and client ids.
    p.load.seed = o.seed * 1000 + static_cast<std::uint64_t>(shard + 1);
    p.load.send_id = o.send_id;
    p.load.sources = sources;
    p.load.reconnect = o.reconnect;
    p.load.tls = o.tls;
    p.load.tls_ca = o.tls_ca;
    if (!sources.empty()) {
        std::rotate(p.load.sources.begin(), p.load.sources.begin() + (shard * 7) % static_cast<int>(sources.size()),
                    p.load.sources.end());
    }
    // One lifeline::Client drives at most kMaxConnectionsPerEngine connections.
    const int needed = (p.load.connections + loadgen::kMaxConnectionsPerEngine - 1) / loadgen::kMaxConnectionsPerEngine;
    p.threads = std::max(o.threads, needed);
    p.epoch_ns = epoch_ns;
    p.ramp = Duration::nanoseconds(static_cast<std::int64_t>(1e9 * o.connections / o.ramp));
    // Uniform arrivals delay each first connect by up to one interval: the ramp ends that much later.
    if (p.load.arrivals == loadgen::Arrivals::uniform) p.ramp = p.ramp + o.heartbeat;
    p.hold = o.hold;
    p.silence_fraction = o.silence;
    p.silence_after = o.silence_after;
    return p;
}

std::string summary_line(const char* label, const std::string& value) {
    return fmt::format("  {:<17}{}\n", label, value);
}

// The generator's heartbeat round trips over the hold, in ms.
nlohmann::json round_trip_json(const loadgen::LatencyHistogram& h) {
    auto ms = [&h](double q) { return static_cast<double>(h.quantile_ns(q)) / 1e6; };
    return nlohmann::json{
        {"samples", h.count()}, {"p50_ms", ms(0.5)}, {"p99_ms", ms(0.99)}, {"p999_ms", ms(0.999)}, {"max_ms", ms(1.0)}};
}

std::string round_trip_text(const loadgen::LatencyHistogram& h) {
    if (h.count() == 0) return "none";
    auto ms = [&h](double q) { return static_cast<double>(h.quantile_ns(q)) / 1e6; };
    return fmt::format("p50 {:.3f} ms, p99 {:.3f} ms, p99.9 {:.3f} ms, max {:.3f} ms ({} samples)", ms(0.5), ms(0.99),
                       ms(0.999), ms(1.0), h.count());
}

std::string latency_text(std::vector<std::int64_t> samples) {
    if (samples.empty()) return "none";
    std::sort(samples.begin(), samples.end());
    auto ms = [](std::int64_t ns) { return fmt::format("{:.1f}", static_cast<double>(ns) / 1e6); };
    return fmt::format("p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms", ms(loadgen::quantile(samples, 0.5)),
                       ms(loadgen::quantile(samples, 0.99)), ms(loadgen::quantile(samples, 0.999)), ms(samples.back()));
}

nlohmann::json report_json(const BenchOptions& o, int shards, loadgen::BenchResult r) {
    nlohmann::json j = loadgen::to_json(r);
    auto& s = r.stats;
    auto q = [](std::vector<std::int64_t> v, double p) { return static_cast<double>(loadgen::quantile(v, p)) / 1e6; };
    j.erase("detect_after_silence_ns");
    j.erase("detect_after_last_send_ns");
    j.erase("round_trip_latency");
    j["round_trip"] = round_trip_json(s.round_trip_latency);
    j["arrivals"] = o.arrivals;
    j["seed"] = o.seed;
    j["client_ids"] = o.send_id && o.protocol != "echo" && o.protocol != "mqtt";
    j["protocol"] = o.protocol;
    j["server"] = o.server;
    j["connections"] = o.connections;
    j["processes"] = shards;
    j["heartbeat_ms"] = o.heartbeat.ms_f();
    j["server_budget_ms"] = o.server_budget.ms_f();
    j["round_trips_per_second"] =
        r.measured > Duration::zero() ? static_cast<double>(r.round_trips_in_hold) / r.measured.seconds_f() : 0.0;
    j["detected"] = s.detect_after_last_send_ns.size();
    j["storm_seconds"] = s.first_drop_ns != 0 && s.last_reconnect_ns > s.first_drop_ns
                             ? static_cast<double>(s.last_reconnect_ns - s.first_drop_ns) / 1e9
                             : 0.0;
    nlohmann::json lat;
    for (const auto& [label, p] : {std::pair{"p50", 0.5}, {"p99", 0.99}, {"p99.9", 0.999}, {"p100", 1.0}}) {
        lat[label] = {{"after_last_send_ms", q(s.detect_after_last_send_ns, p)},
                      {"after_silence_ms", q(s.detect_after_silence_ns, p)}};
    }
    j["detection"] = lat;
    return j;
}

std::string report_text(const BenchOptions& o, int shards, loadgen::BenchResult r) {
    auto& s = r.stats;
    std::string out = fmt::format(
        "lifeline bench: {} protocol, {} connections to {} ({} process{} x {} thread{}), heartbeat {}, "
        "{} arrivals (seed {})\n",
        o.protocol, o.connections, o.server, shards, shards == 1 ? "" : "es", o.threads, o.threads == 1 ? "" : "s",
        to_string(o.heartbeat), o.arrivals, o.seed);
    out += summary_line("connected", fmt::format("{} ({} failed{})", s.connected, s.connect_failures,
                                                 s.first_error.empty() ? "" : ": " + s.first_error));
    if (!s.first_error.empty()) {
        const std::string hint = kernel_hint(s.first_error);
        if (!hint.empty()) out += summary_line("hint", hint);
    }
    const double rate =
        r.measured > Duration::zero() ? static_cast<double>(r.round_trips_in_hold) / r.measured.seconds_f() : 0;
    out += summary_line("round trips", fmt::format("{:.0f}/s over the {} hold", rate, to_string(r.measured)));
    out += summary_line("round trip time", round_trip_text(s.round_trip_latency));
    if (o.silence > 0) {
        out += summary_line("went silent",
                            fmt::format("{} ({:.1f} %) at ramp + {}", s.silenced,
                                        s.connected > 0 ? 100.0 * double(s.silenced) / double(s.connected) : 0.0,
                                        to_string(o.silence_after)));
        out += summary_line("detected", fmt::format("{} of {}", s.detect_after_last_send_ns.size(), s.silenced));
        out += summary_line("after last send", latency_text(s.detect_after_last_send_ns));
        out += summary_line("after silence", latency_text(s.detect_after_silence_ns));
        if (o.server_budget > Duration::zero()) {
            std::vector<std::int64_t> v = s.detect_after_last_send_ns;
            const double p99 = static_cast<double>(loadgen::quantile(v, 0.99)) / 1e6;
            out += summary_line("vs budget", fmt::format("server budget {}: p99 after last send is {:+.1f} ms",
                                                         to_string(o.server_budget), p99 - o.server_budget.ms_f()));
        }
    }
    if (o.reconnect && s.drops > 0) {
        out +=
            summary_line("reconnect storm",
                         fmt::format("{} dropped, {} back, the last {:.2f} s after the first drop", s.drops,
                                     s.reconnected, static_cast<double>(s.last_reconnect_ns - s.first_drop_ns) / 1e9));
    }
    out += summary_line("false positives", fmt::format("{} of {} not silenced", s.false_closes,
                                                       s.connected - std::min(s.connected, s.silenced)));
    return out;
}

int run_bench(BenchOptions& o, const std::vector<std::string>& args) {
    Result<loadgen::Protocol> protocol = parse_protocol(o.protocol);
    if (!protocol) {
        fmt::print(stderr, "lifeline bench: {}\n", protocol.error().message);
        return 2;
    }
    const bool client_protocol = *protocol == loadgen::Protocol::framed || *protocol == loadgen::Protocol::websocket;
    if (o.tls && !client_protocol) {
        fmt::print(stderr, "lifeline bench: --tls needs --protocol framed or websocket\n");
        return 2;
    }
    if (client_protocol && o.timeout <= o.heartbeat) {
        fmt::print(stderr, "lifeline bench: --timeout ({}) must be longer than --heartbeat ({})\n",
                   to_string(o.timeout), to_string(o.heartbeat));
        return 2;
    }
    if (o.silence > 0 && o.silence_after >= o.hold) {
        fmt::print(stderr, "lifeline bench: --silence-after ({}) must come before the end of --hold ({})\n",
                   to_string(o.silence_after), to_string(o.hold));
        return 2;
    }
    if (o.reconnect && o.silence > 0) {
        fmt::print(stderr, "lifeline bench: --reconnect and --silence measure different things; use one at a time\n");
        return 2;
    }
    if (o.reconnect && !client_protocol) {
        fmt::print(stderr,
                   "lifeline bench: --reconnect needs --protocol framed or websocket (the real client's backoff)\n");
        return 2;
    }
    Result<std::vector<std::string>> sources = source_addresses(o);
    if (!sources) {
        fmt::print(stderr, "lifeline bench: {}\n", sources.error().message);
        return 2;
    }
    if (o.server_budget <= Duration::zero()) {
        o.server_budget = client_protocol ? o.timeout
                          : *protocol == loadgen::Protocol::mqtt
                              // MQTT 3.1.1 section 3.1.2.10: the broker disconnects after 1.5 x keep-alive.
                              ? Duration::milliseconds(static_cast<std::int64_t>(
                                    1500.0 * std::ceil(o.heartbeat.seconds_f() < 1 ? 1 : o.heartbeat.seconds_f())))
                              : Duration::zero();
    }
    const rlim_t limit = raise_descriptor_limit();
    const int per_process = static_cast<int>(limit) - kReservedDescriptors;
    if (per_process < 1) {
        fmt::print(stderr, "lifeline bench: descriptor limit {} is too low\n", limit);
        return 1;
    }

    if (!o.shard.empty()) {
        int k = 0, shards = 0;
        long long epoch = 0;
        if (std::sscanf(o.shard.c_str(), "%d/%d@%lld", &k, &shards, &epoch) != 3 || k < 0 || k >= shards) {
            fmt::print(stderr, "lifeline bench: bad --shard '{}'\n", o.shard);
            return 2;
        }
        loadgen::BenchPlan plan = shard_plan(o, *protocol, *sources, k, shards, epoch);
        const Result<loadgen::BenchResult> r = loadgen::run_shard(plan);
        if (!r) {
            fmt::print(stderr, "lifeline bench: shard {}: {}\n", k, r.error().message);
            return 1;
        }
        fmt::print("{}\n", loadgen::to_json(*r).dump());
        return 0;
    }

    const int shards = o.processes > 0 ? o.processes : (o.connections + per_process - 1) / per_process;
    if ((o.connections + shards - 1) / shards > per_process) {
        fmt::print(stderr,
                   "lifeline bench: {} connections over {} process{} is {} per process, above the descriptor limit "
                   "({}); use --processes {}\n",
                   o.connections, shards, shards == 1 ? "" : "es", o.connections / shards, limit,
                   (o.connections + per_process - 1) / per_process);
        return 2;
    }
    // Everyone starts together, once every shard has had time to exec.
    const std::int64_t epoch = monotonic_ns() + (shards > 1 ? 500'000'000 : 50'000'000);

    // Shards 1..P-1 run as children; shard 0 runs here and prints progress.
    // A shard never outlives the bench that counts it (SIGKILL on our death).
    std::vector<std::pair<pid_t, int>> children;
    for (int k = 1; k < shards; ++k) {
        std::vector<std::string> child_args = args;
        child_args.push_back("--shard");
        child_args.push_back(fmt::format("{}/{}@{}", k, shards, epoch));
        Result<SelfProcess> child = spawn_self(child_args, SIGKILL);
        if (!child) {
            fmt::print(stderr, "lifeline bench: starting shard {}: {}\n", k, child.error().message);
            return 1;
        }
        children.emplace_back(child->pid, child->stdout_fd);
    }

    loadgen::BenchPlan plan = shard_plan(o, *protocol, *sources, 0, shards, epoch);
    plan.progress = [shards](const std::string& line) {
        fmt::print(stderr, "bench{}: {}\n", shards > 1 ? " (shard 0)" : "", line);
    };
    Result<loadgen::BenchResult> first = loadgen::run_shard(plan);
    if (!first) {
        fmt::print(stderr, "lifeline bench: {}\n", first.error().message);
        return 1;  // The other shards die with us (their death signal).
    }
    loadgen::BenchResult total = std::move(*first);
    for (auto& [pid, fd] : children) {
        std::string text;
        char buf[65536];
        for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) != 0;) {
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            text.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        int status = 0;
        ::waitpid(pid, &status, 0);
        const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
        Result<loadgen::BenchResult> r = j.is_discarded()
                                             ? Result<loadgen::BenchResult>(Error{"a shard printed no result"})
                                             : loadgen::bench_result_from_json(j);
        if (!r) {
            fmt::print(stderr, "lifeline bench: shard {}: {}\n", pid, r.error().message);
            return 1;
        }
        loadgen::merge(total, *r);
    }
    if (o.json) {
        fmt::print("{}\n", report_json(o, shards, total).dump());  // One line: easy to grep and to stream.
    } else {
        fmt::print("{}", report_text(o, shards, total));
    }
    return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& run) {
    auto o = std::make_shared<BenchOptions>();
    CLI::App* sub = app.add_subcommand(
        "bench",
        "Load generator: open N long-lived connections to a server, keep each one heartbeating, and\n"
        "measure what the server does with them. Protocols: framed (lifeline's, driven by the real\n"
        "client), websocket (RFC 6455 to `serve --mode websocket`, the real client again), echo\n"
        "(8-byte ping, 8-byte echo: for a plain echo server), mqtt (3.1.1 CONNECT with keep-alive,\n"
        "then PINGREQ/PINGRESP: for an MQTT broker). --tls runs framed or websocket over TLS.\n\n"
        "Mass failure: --silence 0.1 makes 10 % of the connections go application-silent (they send\n"
        "nothing but keep reading) --silence-after the ramp, and reports how long after each one's last\n"
        "byte the server closed it (p50/p99/p99.9/max), against --server-budget, and how many of the\n"
        "others the server closed anyway (false positives).\n\n"
        "Scale: connections are spread over source addresses 127.0.0.2-254 (loopback servers) so N can\n"
        "pass one address's ephemeral ports, and over several processes when N passes one process's\n"
        "descriptor limit. When the kernel stops the ramp the summary says which setting to change\n"
        "(net.ipv4.ip_local_port_range, fs.nr_open, net.core.somaxconn).\n\n"
        "Arrivals: uniform (the default) starts each connection at an independent, uniformly random\n"
        "phase within the heartbeat (from --seed), then pings every heartbeat, each ping its own send\n"
        "at its own instant (the generator's loop ticks every 25 us), as real devices would; burst keeps\n"
        "the connections in ramp order on 10 ms ticks, so the pings due in a tick leave together.\n"
        "framed and websocket clients send an id (\"device-<16 hex>-<index>\", 25-29 bytes) unless\n"
        "--no-id. The summary has each heartbeat's round trip as the generator saw it (p50/p99/p99.9).");
    sub->add_option("server", o->server, "HOST:PORT of the server (IPv4)")->required();
    sub->add_flag("--tls", o->tls, "framed and websocket: connect over TLS");
    sub->add_option("--tls-ca", o->tls_ca, "With --tls: the PEM certificate (or CA) to trust")
        ->check(CLI::ExistingFile);
    sub->add_option("--protocol", o->protocol,
                    "framed, websocket (to `serve --mode websocket`; the client pings, masked), echo or mqtt")
        ->capture_default_str()
        ->check(CLI::IsMember({"framed", "websocket", "echo", "mqtt"}));
    sub->add_option("--arrivals", o->arrivals,
                    "uniform (each connection at its own random phase, one send per ping) or burst (pings due in\n"
                    "the same 10 ms tick leave together)")
        ->capture_default_str()
        ->check(CLI::IsMember({"uniform", "burst"}));
    sub->add_option("--seed", o->seed, "Seeds the phases, the client ids and the backoff jitter: same seed, same run")
        ->capture_default_str();
    sub->add_flag("--id,!--no-id", o->send_id,
                  "framed and websocket: send a client id in HELLO (the query) so the server's id map and presence\n"
                  "table are measured too (default on)");
    sub->add_option("-n,--connections", o->connections, "Connections to open")
        ->capture_default_str()
        ->check(CLI::Range(1, 10'000'000));
    sub->add_option("--processes", o->processes, "Generator processes (default: as the descriptor limit requires)")
        ->check(CLI::Range(0, 1000));
    sub->add_option("--threads", o->threads, "Threads per process, one event loop each")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    sub->add_option("--ramp", o->ramp, "New connections per second, all processes together")
        ->capture_default_str()
        ->check(CLI::Range(1.0, 1e7));
    add_duration_option(*sub, "--heartbeat", o->heartbeat, "PING interval (mqtt: keep-alive, whole seconds)");
    add_duration_option(*sub, "--timeout", o->timeout, "framed: the timeout each client asks for");
    add_duration_option(*sub, "--hold", o->hold, "How long to keep the load after the ramp");
    sub->add_option("--silence", o->silence, "Fraction of connections that go silent (0..1)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0));
    add_duration_option(*sub, "--silence-after", o->silence_after, "When, after the ramp, they go silent");
    add_duration_option(
        *sub, "--server-budget", o->server_budget,
        "The server's detection budget, for the report (default: framed --timeout, mqtt 1.5 x keep-alive)");
    sub->add_option("--sources", o->sources, "Source addresses: auto, none, or A.B.C.D-E.F.G.H")->capture_default_str();
    sub->add_flag("--json", o->json, "Print the result as JSON");
    sub->add_flag("--reconnect", o->reconnect,
                  "framed: come back after the server drops a connection (full-jitter backoff 100ms..5s) and\n"
                  "report how long the storm took; a connection lost again after coming back is a false death");
    sub->add_option("--shard", o->shard, "Internal: run as shard K of P from a common epoch")->group("");
    sub->callback([o, &run, sub] {
        run = [o, sub] {
            // The children get the same options; --shard is appended per child.
            const std::vector<std::string> args = rebuild_arguments(*sub, {"--shard"});
            return run_bench(*o, args);
        };
    });
}

}  // namespace lifeline::cli
