#include "lab/lab.hpp"

#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "lab/capture.hpp"
#include "lab/expectations.hpp"
#include "lab/process.hpp"
#include "lab/topology.hpp"

namespace lifeline::lab {

namespace {

constexpr int kFirstPort = 7000;
// How long a rebooting host stays off the network: shorter than every
// budget, so what the server meets is the RST, not its own timeout.
constexpr Duration kRebootDowntime = Duration::milliseconds(300);
// Bytes per second the server streams in transfer_cut: little enough that
// its output budget lasts the whole limit, so only the kernel can end it.
constexpr const char* kTransferRate = "16K";
// In stuck_reader: fast enough to fill the client's receive buffer, the
// server's send buffer and the output budget within a few seconds. The budget
// must hold the largest burst a late push tick may queue (100 ms worth) so
// that a reading client is never mistaken for a slow one.
constexpr const char* kStuckReaderRate = "4M";
constexpr const char* kStuckReaderBudget = "1048576";

std::int64_t wall_ns_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// "2026-11-22T10:00:00.123Z" (events' ts) -> ns since the epoch.
std::optional<std::int64_t> parse_event_ts(const std::string& ts) {
    std::tm tm{};
    int ms = 0;
    if (std::sscanf(ts.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                    &tm.tm_sec, &ms) != 7)
        return std::nullopt;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (std::int64_t{::timegm(&tm)} * 1000 + ms) * 1'000'000;
}

bool framed(Mechanism m) { return m == Mechanism::heartbeat || m == Mechanism::all; }

std::string keepalive_spec(Mechanism m, const LabConfig& c) {
    if (m == Mechanism::none || m == Mechanism::heartbeat) return "off";
    return fmt::format("{}:{}:{}", to_string(c.keepalive_idle), to_string(c.keepalive_interval), c.keepalive_count);
}

std::string user_timeout_spec(Mechanism m, const LabConfig& c) {
    return m == Mechanism::keepalive_user_timeout || m == Mechanism::all ? to_string(c.user_timeout) : "off";
}

std::string iso_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// One side of one cell while the lab runs.
struct Endpoint {
    bool is_server = false;
    bool is_framed = false;
    std::unique_ptr<LabProcess> process;
    std::string log_path;
    std::unique_ptr<std::ofstream> events;  // Every stdout line, for post-mortems.
    bool ready = false;                     // listening (server) / connection established
    bool connected = false;                 // server: the cell's connection arrived
    std::optional<std::int64_t> closed_ns;
    std::optional<DisconnectReason> reason;
    std::string message;
};

struct Cell {
    Fault fault;
    Mechanism mechanism;
    int host;  // Client host index = fault index.
    std::uint16_t port;
    Endpoint server;
    Endpoint client;
};

class LabRunner {
public:
    explicit LabRunner(const LabOptions& o) : options_(o), config_(o.config) {}

    Result<LabRun> run() {
        const auto started = std::chrono::steady_clock::now();
        LabRun result;
        result.config = config_;
        result.started_at = iso_now();
        utsname u{};
        if (::uname(&u) == 0) result.kernel = u.release;

        if (int stale = LabNetwork::remove_stale_labs(); stale > 0)
            say(fmt::format("removed {} namespaces left by an earlier lab that did not finish", stale));
        say(fmt::format("building the network: switch, server host, {} client hosts", options_.faults.size()));
        Result<LabNetwork> net = LabNetwork::create(static_cast<int>(options_.faults.size()));
        if (!net) return net.error();
        network_.emplace(std::move(*net));

        build_cells();
        if (options_.capture) start_capture();
        result.captured = capture_ != nullptr;
        if (auto r = start_servers(); !r) return r.error();
        if (auto r = start_clients(); !r) return r.error();
        say(fmt::format("{} connections up; {} of healthy traffic before the faults", cells_.size(),
                        to_string(config_.settle)));
        if (auto r = watch_until(wall_ns_now() + config_.settle.ns()); !r) return r.error();

        if (auto r = inject_faults(); !r) return r.error();
        say(fmt::format("faults injected; watching for {}", to_string(config_.limit)));
        std::int64_t last_fault_ns = fault_ns_;
        for (const auto& [fault, at] : injected_ns_) last_fault_ns = std::max(last_fault_ns, at);
        if (auto r = watch_until(last_fault_ns + config_.limit.ns()); !r) return r.error();

        // A closing event written just before the deadline may still sit in a pipe.
        if (auto r = pump(Duration::zero()); !r) return r.error();
        std::map<int, std::vector<CapturedPacket>> packets;
        if (capture_) {
            packets = capture_->finish();
            if (capture_->dropped() > 0)
                say(fmt::format("warning: the capture dropped {} packets; wire evidence is incomplete",
                                capture_->dropped()));
        }
        for (Cell& c : cells_) {
            c.server.process.reset();
            c.client.process.reset();
        }
        network_->teardown();
        if (const auto left = network_->leftovers(); !left.empty())
            say(fmt::format("warning: {} namespaces could not be removed (first: {}); `ip netns del` them", left.size(),
                            left.front()));
        for (std::size_t i = 0; i < cells_.size(); ++i) result.cells.push_back(measure(cells_[i], packets[int(i)]));
        result.elapsed = Duration::from_chrono(std::chrono::steady_clock::now() - started);
        return result;
    }

private:
    void say(const std::string& line) const {
        if (options_.progress) options_.progress(line);
    }

    void build_cells() {
        int host = 0;
        for (Fault f : options_.faults) {
            for (Mechanism m : options_.mechanisms) {
                Cell c{f, m, host, static_cast<std::uint16_t>(kFirstPort + cells_.size()), {}, {}};
                c.server.is_server = true;
                c.server.is_framed = c.client.is_framed = framed(m);
                cells_.push_back(std::move(c));
            }
            ++host;
        }
    }

    void start_capture() {
        std::map<std::uint16_t, int> by_port;
        for (std::size_t i = 0; i < cells_.size(); ++i) by_port[cells_[i].port] = static_cast<int>(i);
        auto c = WireCapture::start(network_->switch_ns(), LabNetwork::server_address(), std::move(by_port));
        if (!c) {
            say("warning: no wire evidence: " + c.error().message);
            return;
        }
        capture_ = std::move(*c);
    }

    std::string log_path(const Cell& c, const char* role) const {
        return fmt::format("{}/{}.{}.{}.log", options_.log_directory, to_string(c.fault), to_string(c.mechanism), role);
    }

    Result<void> spawn(Endpoint& e, const std::string& netns, std::vector<std::string> args, std::string log) {
        args.insert(args.begin(), options_.binary);
        e.log_path = std::move(log);
        e.events = std::make_unique<std::ofstream>(e.log_path.substr(0, e.log_path.size() - 4) + ".events.jsonl");
        Result<LabProcess> p = LabProcess::spawn(netns, args, e.log_path);
        if (!p) return p.error();
        e.process = std::make_unique<LabProcess>(std::move(*p));
        return {};
    }

    Result<void> start_servers() {
        say(fmt::format("starting {} servers and {} clients", cells_.size(), cells_.size()));
        for (Cell& c : cells_) {
            const std::string listen = fmt::format("{}:{}", LabNetwork::server_address(), c.port);
            if (auto r = spawn(c.server, network_->server_ns(), server_arguments(c.fault, c.mechanism, config_, listen),
                               log_path(c, "server"));
                !r)
                return r;
        }
        return wait_for([](const Cell& c) { return c.server.ready; }, "servers listening");
    }

    Result<void> start_clients() {
        for (Cell& c : cells_) {
            const std::string server = fmt::format("{}:{}", LabNetwork::server_address(), c.port);
            if (auto r = spawn(c.client, network_->client_ns(c.host),
                               client_arguments(c.fault, c.mechanism, config_, server), log_path(c, "client"));
                !r)
                return r;
        }
        return wait_for([](const Cell& c) { return c.client.ready && c.server.connected; }, "connections established");
    }

    Result<void> wait_for(const std::function<bool(const Cell&)>& done, const std::string& what) {
        const std::int64_t deadline = wall_ns_now() + Duration::seconds(15).ns();
        while (true) {
            const auto missing = std::find_if_not(cells_.begin(), cells_.end(), done);
            if (missing == cells_.end()) return {};
            for (const Cell& c : cells_) {
                for (const Endpoint* e : {&c.server, &c.client}) {
                    if (e->process && e->process->eof() && !done(c))
                        return Error{fmt::format("{}/{}: a {} exited before it was ready; see {}", to_string(c.fault),
                                                 to_string(c.mechanism), e->is_server ? "server" : "client",
                                                 e->log_path)};
                }
            }
            if (wall_ns_now() > deadline) {
                return Error{fmt::format("{}/{}: not ready within 15 s waiting for {}; see {} and {}",
                                         to_string(missing->fault), to_string(missing->mechanism), what,
                                         missing->server.log_path, missing->client.log_path)};
            }
            if (auto r = pump(Duration::milliseconds(50)); !r) return r;
        }
    }

    // Polls every child's stdout and the stop fd once, for at most `wait`.
    Result<void> pump(Duration wait) {
        std::vector<pollfd> fds;
        std::vector<Endpoint*> owners;
        for (Cell& c : cells_) {
            for (Endpoint* e : {&c.server, &c.client}) {
                if (!e->process || e->process->eof()) continue;
                fds.push_back(pollfd{e->process->stdout_fd(), POLLIN, 0});
                owners.push_back(e);
            }
        }
        if (options_.stop_fd >= 0) fds.push_back(pollfd{options_.stop_fd, POLLIN, 0});
        const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<std::int64_t>(wait.ms(), 0)));
        if (n <= 0) return {};
        if (options_.stop_fd >= 0 && fds.back().revents != 0) return Error{"interrupted", EINTR};
        for (std::size_t i = 0; i < owners.size(); ++i) {
            if (fds[i].revents == 0) continue;
            for (const std::string& line : owners[i]->process->read_lines()) on_line(*owners[i], line);
        }
        return {};
    }

    void on_line(Endpoint& e, const std::string& line) const {
        if (e.events) *e.events << line << '\n';
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return;
        const std::string event = j.value("event", "");
        if (e.is_server && event == "listening") e.ready = true;
        if (event == (e.is_framed ? "hello" : "connect")) (e.is_server ? e.connected : e.ready) = true;
        if (event == "closed" && !e.closed_ns) {
            e.closed_ns = parse_event_ts(j.value("ts", ""));
            e.reason = parse_disconnect_reason(j.value("reason", ""));
            e.message = j.value("message", "");
        }
    }

    Result<void> watch_until(std::int64_t wall_deadline_ns) {
        while (true) {
            run_due_actions();
            const std::int64_t now = wall_ns_now();
            if (now >= wall_deadline_ns) return {};
            std::int64_t next = wall_deadline_ns;
            for (const auto& a : actions_) next = std::min(next, a.at_ns);
            if (auto r = pump(Duration::nanoseconds(std::max<std::int64_t>(next - now, 1'000'000))); !r) return r;
        }
    }

    struct Action {
        std::int64_t at_ns;
        std::function<void()> run;
    };

    void run_due_actions() {
        const std::int64_t now = wall_ns_now();
        for (auto it = actions_.begin(); it != actions_.end();) {
            if (it->at_ns > now) {
                ++it;
                continue;
            }
            auto action = std::move(it->run);
            it = actions_.erase(it);
            action();
        }
    }

    std::vector<Cell*> cells_of(Fault f) {
        std::vector<Cell*> v;
        for (Cell& c : cells_) {
            if (c.fault == f) v.push_back(&c);
        }
        return v;
    }

    Result<void> inject_faults() {
        fault_ns_ = wall_ns_now();
        std::vector<int> to_wipe;
        for (std::size_t i = 0; i < options_.faults.size(); ++i) {
            const Fault f = options_.faults[i];
            const int host = static_cast<int>(i);
            const std::int64_t before_ns = wall_ns_now();
            Result<void> r;
            switch (f) {
                case Fault::cable_pull:
                case Fault::transfer_cut:
                    r = network_->pull_cable(host);
                    break;
                case Fault::blackhole_out:
                    r = network_->blackhole(host, true);
                    break;
                case Fault::blackhole_in:
                    r = network_->blackhole(host, false);
                    break;
                case Fault::freeze:
                    for (Cell* c : cells_of(f)) c->client.process->signal(SIGSTOP);
                    break;
                case Fault::crash:
                    for (Cell* c : cells_of(f)) c->client.process->signal(SIGKILL);
                    break;
                case Fault::host_reboot:
                    r = network_->pull_cable(host);
                    to_wipe.push_back(host);
                    break;
                case Fault::stuck_reader:
                    for (Cell* c : cells_of(f)) c->client.process->signal(SIGUSR1);
                    break;
                case Fault::server_stall:
                    for (Cell* c : cells_of(f)) c->server.process->signal(SIGSTOP);
                    actions_.push_back({wall_ns_now() + (config_.heartbeat_timeout * 2).ns(), [this, f] {
                                            for (Cell* c : cells_of(f)) c->server.process->signal(SIGCONT);
                                        }});
                    break;
            }
            if (!r) return r.error().with_context(std::string("injecting ") + std::string(to_string(f)));
            // Each fault's own instant. A signal acts at once (a killed
            // process's FIN may beat our next clock read); a command (ip, nft)
            // takes milliseconds, and the fault is surely in effect only once it returns.
            const bool by_signal =
                f == Fault::freeze || f == Fault::crash || f == Fault::stuck_reader || f == Fault::server_stall;
            injected_ns_[f] = by_signal ? before_ns : wall_ns_now();
        }
        // The slow part of a reboot comes after every other fault is in place.
        for (int host : to_wipe) {
            for (Cell* c : cells_of(Fault::host_reboot)) c->client.process->kill_and_reap();
            if (auto r = network_->wipe_host(host); !r) return r.error().with_context("rebooting a host");
            actions_.push_back({injected_ns_[Fault::host_reboot] + kRebootDowntime.ns(), [this, host] {
                                    if (auto p = network_->plug_cable(host); !p) say("warning: " + p.error().message);
                                }});
        }
        return {};
    }

    SideOutcome outcome(const Endpoint& e, std::int64_t fault_ns) const {
        SideOutcome o;
        if (!e.closed_ns) return o;
        // Events carry whole milliseconds: compare with the fault's millisecond,
        // or a close within the same millisecond would seem to precede it.
        const Duration latency = Duration::nanoseconds(*e.closed_ns - fault_ns / 1'000'000 * 1'000'000);
        if (latency > config_.limit) return o;
        o.detected = true;
        o.reason = e.reason;
        o.latency = latency;
        o.message = e.message;
        return o;
    }

    CellResult measure(const Cell& c, const std::vector<CapturedPacket>& packets) const {
        CellResult r;
        r.fault = c.fault;
        r.mechanism = c.mechanism;
        const std::int64_t fault_ns = injected_ns_.at(c.fault);
        r.server = outcome(c.server, fault_ns);
        r.client = outcome(c.client, fault_ns);
        std::map<std::pair<int, std::int64_t>, int> sampled;  // (side, 100 ms bucket) -> data/ack kept
        for (const CapturedPacket& p : packets) {
            const Duration at = Duration::nanoseconds(p.wall_ns - fault_ns);
            const bool payload =
                p.kind == WireKind::data || p.kind == WireKind::retransmission || p.kind == WireKind::window_probe;
            if (p.from == Side::client && payload && p.payload_bytes > 0 && at <= Duration::zero() &&
                (!r.last_byte_from_client || at > *r.last_byte_from_client))
                r.last_byte_from_client = at;
            if (at < Duration::zero() - config_.settle || at > config_.limit) continue;
            if (p.kind == WireKind::data || p.kind == WireKind::ack) {
                // Thin the ordinary traffic: one of each per side per 100 ms is enough to see it flow.
                const std::int64_t bucket = at.ms() >= 0 ? at.ms() / 100 : (at.ms() - 99) / 100;  // Floor.
                const auto key = std::make_pair(int(p.from) * 16 + int(p.kind), bucket);
                if (sampled[key]++ > 0) continue;
            }
            r.wire.push_back(WirePacket{at, p.from, p.kind, p.payload_bytes});
        }
        judge(r, expect(c.fault, c.mechanism, config_), config_.limit);
        return r;
    }

    const LabOptions& options_;
    LabConfig config_;
    std::optional<LabNetwork> network_;
    std::unique_ptr<WireCapture> capture_;
    std::vector<Cell> cells_;
    std::vector<Action> actions_;
    std::int64_t fault_ns_ = 0;  // When injection began.
    std::map<Fault, std::int64_t> injected_ns_;
};

}  // namespace

Result<void> LabOptions::validate() const {
    const LabConfig& c = config;
    if (faults.empty() || mechanisms.empty()) return Error{"nothing to run: no faults or no mechanisms"};
    if (faults.size() > 200) return Error{"at most 200 faults (one client host each)"};
    if (faults.size() * mechanisms.size() > 1000) return Error{"at most 1000 cells (one port each)"};
    if (binary.empty()) return Error{"no lifeline binary to run"};
    if (c.heartbeat_timeout <= c.heartbeat_interval * 2)
        return Error{"--timeout must be more than twice --heartbeat (room for a lost PING)"};
    if (c.limit <= Duration::zero() || c.settle < Duration::zero())
        return Error{"--limit must be > 0 and --settle >= 0"};
    if (c.limit < c.heartbeat_timeout * 2 + kRebootDowntime)
        return Error{"--limit must cover the server stall (twice --timeout) and a reboot"};
    const Duration slowest = std::max({keepalive_budget(c), c.user_timeout, c.heartbeat_timeout});
    if (c.limit < slowest + kKernelTolerance)
        return Error{
            fmt::format("--limit ({}) must be at least the slowest budget ({}) + 1s, or every cell "
                        "that relies on it would be MISSED",
                        to_string(c.limit), to_string(slowest))};
    for (std::size_t i = 0; i < faults.size(); ++i) {
        if (std::find(faults.begin() + i + 1, faults.end(), faults[i]) != faults.end())
            return Error{"--faults: " + std::string(to_string(faults[i])) + " is listed twice"};
    }
    for (std::size_t i = 0; i < mechanisms.size(); ++i) {
        if (std::find(mechanisms.begin() + i + 1, mechanisms.end(), mechanisms[i]) != mechanisms.end())
            return Error{"--mechanisms: " + std::string(to_string(mechanisms[i])) + " is listed twice"};
    }
    return {};
}

std::vector<std::string> server_arguments(Fault fault, Mechanism m, const LabConfig& c, const std::string& listen) {
    std::vector<std::string> a = {"serve",
                                  "--listen",
                                  listen,
                                  "--log",
                                  "json",
                                  "--keepalive",
                                  keepalive_spec(m, c),
                                  "--user-timeout",
                                  user_timeout_spec(m, c)};
    if (framed(m)) {
        // The server pings too, so a rebooted client's RST reaches it as fast as heartbeats allow.
        a.insert(a.end(),
                 {"--mode", "framed", "--heartbeat", to_string(c.heartbeat_interval), "--timeout",
                  to_string(c.heartbeat_timeout), "--max-timeout", to_string(c.heartbeat_timeout), "--min-interval",
                  to_string(std::min(c.heartbeat_interval, Duration::milliseconds(100))), "--server-pings"});
    } else {
        a.insert(a.end(), {"--mode", "raw"});
    }
    if (fault == Fault::transfer_cut) a.insert(a.end(), {"--push", kTransferRate});
    if (fault == Fault::stuck_reader)
        a.insert(a.end(), {"--push", kStuckReaderRate, "--output-budget", kStuckReaderBudget});
    return a;
}

std::vector<std::string> client_arguments(Fault fault, Mechanism m, const LabConfig& c, const std::string& server) {
    std::vector<std::string> a = {"connect",
                                  server,
                                  "--no-stdin",
                                  "--log",
                                  "json",
                                  "--keepalive",
                                  keepalive_spec(m, c),
                                  "--user-timeout",
                                  user_timeout_spec(m, c)};
    if (framed(m)) {
        // In server_stall the clients are more patient than the server they
        // ping: what is tested is the server's guard against its own stall.
        const Duration timeout = fault == Fault::server_stall ? c.heartbeat_timeout * 4 : c.heartbeat_timeout;
        a.insert(a.end(),
                 {"--mode", "framed", "--heartbeat", to_string(c.heartbeat_interval), "--timeout", to_string(timeout)});
    } else {
        a.insert(a.end(), {"--mode", "raw"});
    }
    if (fault == Fault::stuck_reader) a.push_back("--stop-reading-on-sigusr1");
    return a;
}

Result<LabRun> run_lab(const LabOptions& options) {
    if (auto v = options.validate(); !v) return v.error();
    LabRunner runner(options);
    return runner.run();
}

}  // namespace lifeline::lab
