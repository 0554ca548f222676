// `lifeline sim`: the core on a simulated network, deterministic from a seed.
#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "sim/simulation.hpp"

namespace lifeline::cli {

namespace {

struct SimOptions {
    sim::SimulationConfig config;
    bool json = false;
};

std::string at(Instant t) { return t.is_set() ? to_string(t - Instant::from_ns(0)) : "-"; }

std::string silent_since(const sim::ConnectionOutcome& c) {
    switch (c.fate) {
        case sim::PeerFate::crashed:
        case sim::PeerFate::frozen:
            return at(c.fault_at);
        default:
            return "-";
    }
}

void print_table(const SimOptions& o, const sim::SimulationReport& r) {
    const auto& cfg = o.config;
    fmt::print("lifeline sim: {} connections, heartbeat {} / timeout {}, wheel tick {}, {} simulated, seed {}\n",
               cfg.connections, to_string(cfg.interval), to_string(cfg.timeout), to_string(cfg.tick),
               to_string(cfg.duration), cfg.seed);
    fmt::print("network: one-way delay {}..{} + jitter {}, loss {:.1f}% (+{} per loss)\n\n",
               to_string(cfg.network.min_base_delay), to_string(cfg.network.max_base_delay),
               to_string(cfg.network.jitter), cfg.network.loss * 100, to_string(cfg.network.retransmit_delay));
    fmt::print("{:>5}  {:<14}  {:>10}  {:>10}  {:>12}  {:>10}  {:>9}  {}\n", "conn", "peer", "silent at", "last byte",
               "declared at", "detected", "rtt", "server verdict");
    for (const auto& c : r.connections) {
        std::string detected = "-";
        std::string verdict = "alive";
        if (c.server_declared_at.is_set()) {
            detected = "+" + to_string(c.server_declared_at - c.last_arrival);
            verdict = "dead: heartbeat_timeout";
        } else if (c.server_reason) {
            verdict = std::string("closed: ") + std::string(to_string(*c.server_reason));
        } else if (c.fate == sim::PeerFate::frozen) {
            verdict = "alive (freeze of " + to_string(c.freeze_for) + " survived)";
        }
        std::string peer(sim::to_string(c.fate));
        if (c.fate == sim::PeerFate::frozen) peer += " " + to_string(c.freeze_for);
        fmt::print("{:>5}  {:<14}  {:>10}  {:>10}  {:>12}  {:>10}  {:>9}  {}\n", c.id, peer, silent_since(c),
                   at(c.last_arrival), at(c.server_declared_at), detected, to_string(c.rtt_smoothed), verdict);
    }
    fmt::print(
        "\n'detected' is the time from the last byte that arrived to the verdict; the budget is the\n"
        "timeout ({}) plus at most one wheel tick ({}).\n",
        to_string(cfg.timeout), to_string(cfg.tick));
    fmt::print("{} events, {} frames. ", r.events, r.frames);
    if (r.violations.empty()) {
        fmt::print("Every check held: each silent peer caught within budget, no live peer convicted.\n");
    } else {
        fmt::print("{} violations:\n", r.violations.size());
        for (const auto& v : r.violations) fmt::print("  {}\n", v);
    }
}

void print_json(const sim::SimulationReport& r) {
    nlohmann::json out;
    out["seed"] = r.seed;
    out["events"] = r.events;
    out["frames"] = r.frames;
    out["violations"] = r.violations;
    auto ms = [](Instant t) -> nlohmann::json {
        if (!t.is_set()) return nullptr;
        return (t - Instant::from_ns(0)).ms_f();
    };
    for (const auto& c : r.connections) {
        nlohmann::json j;
        j["id"] = c.id;
        j["peer"] = std::string(sim::to_string(c.fate));
        j["fault_at_ms"] = ms(c.fault_at);
        j["freeze_ms"] = c.freeze_for.ms_f();
        j["last_byte_at_ms"] = ms(c.last_arrival);
        j["declared_dead_at_ms"] = ms(c.server_declared_at);
        j["server_reason"] = c.server_reason ? nlohmann::json(std::string(to_string(*c.server_reason))) : nullptr;
        j["client_reason"] = c.client_reason ? nlohmann::json(std::string(to_string(*c.client_reason))) : nullptr;
        j["rtt_ms"] = c.rtt_smoothed.ms_f();
        out["connections"].push_back(j);
    }
    fmt::print("{}\n", out.dump(2));
}

}  // namespace

void add_sim_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<SimOptions>();
    auto& cfg = opts->config;
    // A demo wants every kind of peer in a small table.
    cfg.connections = 16;
    cfg.duration = Duration::seconds(20);
    cfg.faults.crash_fraction = 0.25;
    cfg.faults.freeze_fraction = 0.25;
    cfg.faults.busy_fraction = 0.20;
    cfg.faults.max_freeze = Duration::seconds(6);

    CLI::App* sub = app.add_subcommand(
        "sim",
        "Run the liveness core on a simulated network: one server, N clients that crash, freeze,\n"
        "stream data or stay healthy, over links with delay, jitter and loss. Prints, per connection,\n"
        "when the peer went silent and when the server declared it dead, and checks that every silent\n"
        "peer was caught within timeout + 1 tick and no live peer was convicted (exit 1 otherwise).\n"
        "Deterministic: the same --seed gives the same run.");
    sub->add_option("-n,--connections", cfg.connections, "Simulated client connections")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1'000'000u));
    sub->add_option("--seed", cfg.seed, "Random seed (a failing seed replays exactly)")->capture_default_str();
    add_duration_option(*sub, "--duration", cfg.duration, "Simulated time to run");
    add_duration_option(*sub, "--heartbeat", cfg.interval, "Client heartbeat interval");
    add_duration_option(*sub, "--timeout", cfg.timeout, "Silence after which a peer is declared dead");
    add_duration_option(*sub, "--tick", cfg.tick, "Timing wheel tick");
    sub->add_option("--crash-fraction", cfg.faults.crash_fraction, "Share of clients whose host vanishes")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0));
    sub->add_option("--freeze-fraction", cfg.faults.freeze_fraction,
                    "Share of clients whose process is stopped for a while")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0));
    sub->add_option("--busy-fraction", cfg.faults.busy_fraction, "Share of clients that stream DATA")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0));
    sub->add_option("--loss", cfg.network.loss, "Per-segment loss probability (each loss delays by a retransmission)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.5));
    sub->add_flag("--json", opts->json, "Print the report as JSON");
    sub->callback([opts, &run] {
        run = [opts] {
            const auto& c = opts->config;
            if (c.faults.crash_fraction + c.faults.freeze_fraction + c.faults.busy_fraction > 1.0) {
                fmt::print(stderr,
                           "lifeline sim: --crash-fraction + --freeze-fraction + --busy-fraction must not exceed 1\n");
                return 2;
            }
            if (c.interval <= Duration::zero() || c.timeout <= c.interval || c.tick <= Duration::zero()) {
                fmt::print(stderr,
                           "lifeline sim: need --heartbeat > 0, --timeout > --heartbeat and --tick > 0 "
                           "(got heartbeat {}, timeout {}, tick {})\n",
                           to_string(c.interval), to_string(c.timeout), to_string(c.tick));
                return 2;
            }
            const sim::SimulationReport report = sim::run_simulation(c);
            if (opts->json) {
                print_json(report);
            } else {
                print_table(*opts, report);
            }
            return report.violations.empty() ? 0 : 1;
        };
    });
}

}  // namespace lifeline::cli
