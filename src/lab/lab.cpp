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
// nat_expiry: the client hands over one message this often once the NAT has
// had time to forget an idle flow, and stops this long before the watch ends,
// so that a message still in flight then is not counted as lost.
constexpr Duration kNatMessageInterval = Duration::milliseconds(500);
constexpr Duration kNatQuietBeforeEnd = Duration::seconds(1);
// At the end, each process gets SIGTERM and this long to report its
// connection's final counts (the server flushes for up to 1.5 s).
constexpr Duration kFinalReportWait = Duration::seconds(4);

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
    // Application bytes of the connection's `closed` event, whenever it came
    // (within the limit, or at the final SIGTERM); unset if it never came.
    std::optional<std::uint64_t> data_in;
    std::optional<std::uint64_t> data_out;
};

struct Cell {
    Fault fault;
    Mechanism mechanism;
    Host client_host;  // Client host index = fault index.
    Host server_host;  // Server host 1 for server_reboot, else 0.
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
        Result<LabNetwork> net = LabNetwork::create(static_cast<int>(options_.faults.size()), config_.ipv6);
        if (!net) return net.error();
        network_.emplace(std::move(*net));

        build_cells();
        if (auto r = add_nats(); !r) return r.error();
        if (options_.capture) start_capture();
        result.captured = capture_ != nullptr;
        if (auto r = start_servers(); !r) return r.error();
        if (auto r = start_clients(); !r) return r.error();
        if (auto r = protect_servers(); !r) return r.error();
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
        if (auto r = collect_final_counts(); !r) return r.error();
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
            const Host server = Host::server_host(f == Fault::server_reboot ? 1 : 0);
            for (Mechanism m : options_.mechanisms) {
                Cell c{f,  m, Host::client_host(host), server, static_cast<std::uint16_t>(kFirstPort + cells_.size()),
                       {}, {}};
                c.server.is_server = true;
                c.server.is_framed = c.client.is_framed = has_heartbeats(m);
                cells_.push_back(std::move(c));
            }
            ++host;
        }
    }

    // The NAT sits in the switch from the start: flows are learnt from their SYN.
    Result<void> add_nats() {
        for (std::size_t i = 0; i < options_.faults.size(); ++i) {
            if (options_.faults[i] != Fault::nat_expiry) continue;
            if (auto r = network_->add_nat(Host::client_host(static_cast<int>(i)), config_.nat_timeout); !r)
                return r.error().with_context("adding the NAT");
        }
        return {};
    }

    void start_capture() {
        std::map<std::uint16_t, int> by_port;
        for (std::size_t i = 0; i < cells_.size(); ++i) by_port[cells_[i].port] = static_cast<int>(i);
        std::vector<std::string> servers;
        for (int i = 0; i < LabNetwork::kServerHosts; ++i) servers.push_back(network_->address(Host::server_host(i)));
        auto c = WireCapture::start(network_->switch_ns(), servers, std::move(by_port));
        if (!c) {
            say("warning: no wire evidence: " + c.error().message);
            return;
        }
        capture_ = std::move(*c);
    }

    std::string log_path(const Cell& c, const char* role) const {
        return fmt::format("{}/{}.{}.{}.log", options_.log_directory, to_string(c.fault), to_string(c.mechanism), role);
    }

    Result<void> spawn(Endpoint& e, const std::string& netns, std::vector<std::string> args, std::string log,
                       bool with_stdin = false) {
        args.insert(args.begin(), options_.binary);
        e.log_path = std::move(log);
        e.events = std::make_unique<std::ofstream>(e.log_path.substr(0, e.log_path.size() - 4) + ".events.jsonl");
        Result<LabProcess> p = LabProcess::spawn(netns, args, e.log_path, with_stdin);
        if (!p) return p.error();
        e.process = std::make_unique<LabProcess>(std::move(*p));
        return {};
    }

    Result<void> start_servers() {
        say(fmt::format("starting {} servers and {} clients", cells_.size(), cells_.size()));
        for (Cell& c : cells_) {
            const std::string listen = network_->endpoint(c.server_host, c.port);
            std::vector<std::string> args = server_arguments(c.fault, c.mechanism, config_, listen);
            if (c.mechanism == Mechanism::run) {
                std::vector<std::string> wrapper = run_wrapper(config_, options_.binary);
                args.insert(args.begin(), wrapper.begin(), wrapper.end());
            }
            if (auto r = spawn(c.server, network_->ns(c.server_host), std::move(args), log_path(c, "server")); !r)
                return r;
        }
        return wait_for([](const Cell& c) { return c.server.ready; }, "servers listening");
    }

    // Mechanism::protect: `lifeline protect --pid` on each such server once
    // its connection is up, as an operator would on a program already running.
    Result<void> protect_servers() {
        for (Cell& c : cells_) {
            if (c.mechanism != Mechanism::protect) continue;
            std::vector<std::string> argv = protect_arguments(config_, c.server.process->pid());
            argv.insert(argv.begin(), options_.binary);
            if (Result<std::string> r = run_command(argv, network_->ns(c.server_host)); !r)
                return r.error().with_context(fmt::format("{}/protect", to_string(c.fault)));
        }
        return {};
    }

    Result<void> start_clients() {
        for (Cell& c : cells_) {
            const std::string server = network_->endpoint(c.server_host, c.port);
            if (auto r = spawn(c.client, network_->ns(c.client_host),
                               client_arguments(c.fault, c.mechanism, config_, server), log_path(c, "client"),
                               /*with_stdin=*/c.fault == Fault::nat_expiry);
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
            if (j.contains("data_in") && j.contains("data_out")) {
                e.data_in = j.value("data_in", std::uint64_t{0});
                e.data_out = j.value("data_out", std::uint64_t{0});
            }
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
        std::vector<Host> to_wipe;
        for (std::size_t i = 0; i < options_.faults.size(); ++i) {
            const Fault f = options_.faults[i];
            const Host host = Host::client_host(static_cast<int>(i));
            const std::int64_t before_ns = wall_ns_now();
            std::optional<std::int64_t> at_ns;  // When the fault takes effect, if not when injected.
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
                case Fault::nat_expiry:
                    at_ns = schedule_nat_messages(before_ns + config_.nat_timeout.ns());
                    break;
                case Fault::server_reboot: {
                    const Host server = Host::server_host(1);
                    r = network_->pull_cable(server);
                    to_wipe.push_back(server);
                    break;
                }
            }
            if (!r) return r.error().with_context(std::string("injecting ") + std::string(to_string(f)));
            // Each fault's own instant. A signal acts at once (a killed
            // process's FIN may beat our next clock read); a command (ip, nft)
            // takes milliseconds, and the fault is surely in effect only once it returns.
            const bool by_signal =
                f == Fault::freeze || f == Fault::crash || f == Fault::stuck_reader || f == Fault::server_stall;
            injected_ns_[f] = at_ns ? *at_ns : by_signal ? before_ns : wall_ns_now();
        }
        // The slow part of a reboot comes after every other fault is in place.
        for (const Host host : to_wipe) {
            const Fault f = host.server ? Fault::server_reboot : Fault::host_reboot;
            for (Cell* c : cells_of(f)) (host.server ? c->server : c->client).process->kill_and_reap();
            if (auto r = network_->wipe_host(host); !r) return r.error().with_context("rebooting a host");
            actions_.push_back({injected_ns_[f] + kRebootDowntime.ns(), [this, host] {
                                    if (auto p = network_->plug_cable(host); !p) say("warning: " + p.error().message);
                                }});
        }
        return {};
    }

    // nat_expiry: from `first_ns` (when an idle flow is surely forgotten) the
    // clients hand over a numbered message every kNatMessageInterval, as an
    // application with something to say would. Returns `first_ns`.
    std::int64_t schedule_nat_messages(std::int64_t first_ns) {
        const std::int64_t last_ns = first_ns + (config_.limit - kNatQuietBeforeEnd).ns();
        int n = 0;
        for (std::int64_t at = first_ns; at <= last_ns; at += kNatMessageInterval.ns(), ++n) {
            actions_.push_back({at, [this, n] {
                                    for (Cell* c : cells_of(Fault::nat_expiry)) {
                                        if (c->client.process && !c->client.closed_ns)
                                            c->client.process->write_stdin(fmt::format("message {}\n", n));
                                    }
                                }});
        }
        return first_ns;
    }

    // Every process still running gets SIGTERM (SIGCONT first, for a frozen
    // one) and a few seconds to write its connection's `closed` event, whose
    // counts tell what reached the application on each side.
    Result<void> collect_final_counts() {
        for (Cell& c : cells_) {
            for (Endpoint* e : {&c.server, &c.client}) {
                if (!e->process || e->process->eof()) continue;
                e->process->signal(SIGCONT);
                e->process->signal(SIGTERM);
            }
        }
        const std::int64_t deadline = wall_ns_now() + kFinalReportWait.ns();
        auto running = [this] {
            for (const Cell& c : cells_) {
                for (const Endpoint* e : {&c.server, &c.client}) {
                    if (e->process && !e->process->eof()) return true;
                }
            }
            return false;
        };
        while (running() && wall_ns_now() < deadline) {
            if (auto r = pump(Duration::milliseconds(50)); !r) return r;
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

    // What each side's application handed over minus what the other side's
    // received, both ways. Only for faults that carry application data: in
    // the others nothing is handed over, so nothing can be lost.
    static std::optional<std::uint64_t> lost_bytes(const Cell& c) {
        if (!carries_application_data(c.fault)) return std::nullopt;
        const Endpoint& s = c.server;
        const Endpoint& k = c.client;
        if (!s.data_in || !s.data_out || !k.data_in || !k.data_out) return std::nullopt;
        const auto short_by = [](std::uint64_t sent, std::uint64_t got) { return sent > got ? sent - got : 0; };
        return short_by(*s.data_out, *k.data_in) + short_by(*k.data_out, *s.data_in);
    }

    CellResult measure(const Cell& c, const std::vector<CapturedPacket>& packets) const {
        CellResult r;
        r.fault = c.fault;
        r.mechanism = c.mechanism;
        const std::int64_t fault_ns = injected_ns_.at(c.fault);
        r.server = outcome(c.server, fault_ns);
        r.client = outcome(c.client, fault_ns);
        r.lost_bytes = lost_bytes(c);
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

Result<LabRun> run_lab(const LabOptions& options) {
    if (auto v = options.validate(); !v) return v.error();
    LabRunner runner(options);
    return runner.run();
}

}  // namespace lifeline::lab
