// `lifeline serve --workers N`: a supervisor and N worker processes.
//
// One process may hold at most its descriptor limit of connections (20,000
// here, a hard limit), so past that the server runs as several processes.
// Each worker is a plain `lifeline serve` with its own event loops and its own
// SO_REUSEPORT listener on the same address; the kernel spreads connections
// across them. The supervisor holds the port, restarts a worker that dies
// (with backoff), merges the workers' event lines into one stream (adding
// "worker"), serves their summed /metrics and joined /connections, and on
// SIGINT/SIGTERM stops them all.
#include "cli/serve_workers.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/self_process.hpp"
#include "lifeline/server.hpp"
#include "net/endpoint.hpp"
#include "net/pidfd.hpp"
#include "runtime/http_endpoint.hpp"
#include "runtime/metrics.hpp"

namespace lifeline::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::seconds(5);
constexpr auto kStableAfter = std::chrono::seconds(30);  // A worker up this long starts its backoff afresh.
constexpr auto kStopGrace = std::chrono::seconds(3);     // Then SIGKILL.

struct Worker {
    int index = 0;
    pid_t pid = -1;
    int out = -1;                       // Its stdout.
    std::optional<net::PidFd> exit_fd;  // Readable once it exits; none on kernels before 5.3.
    std::string partial;
    std::string metrics_url;  // Its own /metrics, from its second "listening" event.
    Clock::time_point started;
    Clock::time_point restart_at;
    std::chrono::milliseconds backoff = kFirstBackoff;
    bool listening = false;
};

// Reserves the port for the workers: bound with SO_REUSEPORT, never listening,
// so it takes no connections but keeps "port 0" resolved to one port for all.
Result<std::pair<int, std::string>> reserve_address(const std::string& listen) {
    Result<net::Endpoint> e = net::parse_endpoint(listen);
    if (!e) return e.error();
    const int fd = ::socket(e->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return system_error("socket", errno);
    const int one = 1;
    // Without SO_REUSEPORT here the workers' listeners could not share the port.
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        const int err = errno;
        ::close(fd);
        return system_error("setsockopt(SO_REUSEPORT/SO_REUSEADDR) for " + listen, err);
    }
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&e->addr), e->len) != 0) {
        const int err = errno;
        ::close(fd);
        return system_error("bind " + listen, err);
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
        const int err = errno;
        ::close(fd);
        return system_error("getsockname " + listen, err);
    }
    net::Endpoint resolved = *e;
    std::memcpy(&resolved.addr, &bound, len);
    resolved.len = len;
    return std::make_pair(fd, resolved.to_string());
}

class Supervisor {
public:
    Supervisor(const WorkerSupervisorOptions& o, std::string address) : options_(o), address_(std::move(address)) {}

    int run(int signal_fd) {
        workers_.resize(static_cast<std::size_t>(options_.workers));
        for (int k = 0; k < options_.workers; ++k) workers_[static_cast<std::size_t>(k)].index = k;
        for (Worker& w : workers_) spawn(w);
        bool stopping = false;
        Clock::time_point kill_at{};
        while (true) {
            std::vector<pollfd> fds{{signal_fd, POLLIN, 0}};
            for (const Worker& w : workers_) fds.push_back({w.out, POLLIN, 0});
            for (const Worker& w : workers_) fds.push_back({w.exit_fd ? w.exit_fd->fd() : -1, POLLIN, 0});
            const int wait_ms = next_wait_ms(stopping, kill_at);
            ::poll(fds.data(), fds.size(), wait_ms);
            if (fds[0].revents & POLLIN) {
                signalfd_siginfo info{};
                [[maybe_unused]] ssize_t n = ::read(signal_fd, &info, sizeof(info));
                if (!stopping) {
                    stopping = true;
                    kill_at = Clock::now() + kStopGrace;
                    for (const Worker& w : workers_) {
                        if (w.pid > 0) ::kill(w.pid, SIGTERM);
                    }
                }
            }
            for (std::size_t i = 0; i < workers_.size(); ++i) {
                if (fds[i + 1].revents != 0) drain(workers_[i]);
            }
            reap(stopping);
            if (stopping) {
                if (std::all_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.pid < 0; })) return 0;
                if (Clock::now() >= kill_at) {
                    for (const Worker& w : workers_) {
                        if (w.pid > 0) ::kill(w.pid, SIGKILL);
                    }
                }
                continue;
            }
            for (Worker& w : workers_) {
                if (w.pid < 0 && Clock::now() >= w.restart_at) spawn(w);
            }
        }
    }

    std::string metrics() {
        std::vector<std::string> texts;
        for (const auto& [k, url] : worker_urls()) {
            httplib::Client client(url);
            client.set_connection_timeout(1);
            client.set_read_timeout(2);
            if (auto res = client.Get("/metrics"); res && res->status == 200) texts.push_back(res->body);
        }
        return runtime::sum_prometheus_texts(texts);
    }

    std::string connections() {
        nlohmann::json all = nlohmann::json::array();
        for (const auto& [k, url] : worker_urls()) {
            httplib::Client client(url);
            client.set_connection_timeout(1);
            client.set_read_timeout(2);
            if (auto res = client.Get("/connections"); res && res->status == 200) {
                nlohmann::json part = nlohmann::json::parse(res->body, nullptr, false);
                if (part.is_array()) {
                    for (auto& c : part) {
                        c["worker"] = k;
                        all.push_back(std::move(c));
                    }
                }
            }
        }
        return all.dump();
    }

private:
    // (worker index, its /metrics base URL) for the workers up right now.
    std::vector<std::pair<int, std::string>> worker_urls() {
        std::lock_guard lock(urls_mutex_);
        return urls_;
    }

    void rebuild_urls() {
        std::lock_guard lock(urls_mutex_);
        urls_.clear();
        for (const Worker& x : workers_) {
            if (!x.metrics_url.empty()) urls_.emplace_back(x.index, x.metrics_url);
        }
    }

    int next_wait_ms(bool stopping, Clock::time_point kill_at) const {
        const Clock::time_point far = Clock::time_point::max();
        Clock::time_point next = far;
        if (stopping) next = std::min(next, kill_at);
        for (const Worker& w : workers_) {
            if (w.pid < 0 && !stopping) next = std::min(next, w.restart_at);
        }
        // Without a pidfd a child exits without telling the poll: wake often
        // enough to reap it promptly. With them an idle supervisor sleeps.
        const bool blind =
            std::any_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.pid > 0 && !w.exit_fd; });
        if (blind) next = std::min(next, Clock::now() + std::chrono::milliseconds(100));
        if (next == far) return -1;  // Nothing due: sleep until a worker or a signal says something.
        return static_cast<int>(std::max<std::int64_t>(
            0, std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count()));
    }

    void spawn(Worker& w) {
        std::vector<std::string> args = options_.worker_args;
        args.push_back("--listen");
        args.push_back(address_);
        if (!options_.http.empty()) {
            args.push_back("--http");
            args.push_back("127.0.0.1:0");
        }
        if (options_.redis_presence) {
            const std::string base = options_.presence_gateway.empty() ? lifeline::default_presence_gateway(address_)
                                                                       : options_.presence_gateway;
            args.push_back("--gateway");
            args.push_back(base + "/w" + std::to_string(w.index));
        }
        // Workers go when the supervisor goes, however it goes: SIGTERM lets
        // them close their peers properly; nobody is left holding the port.
        Result<SelfProcess> child = spawn_self(args, SIGTERM);
        if (!child) {
            emit_error(w, child.error().message);
            w.restart_at = Clock::now() + w.backoff;
            return;
        }
        // Cannot fail for a pipe we just made; if it did, a blocking read
        // would stall the supervisor, so say so and treat it as a failed start.
        if (::fcntl(child->stdout_fd, F_SETFL, O_NONBLOCK) != 0) {
            emit_error(w, "fcntl(O_NONBLOCK) on a worker's stdout: " + std::string(std::strerror(errno)));
        }
        w.pid = child->pid;
        w.out = child->stdout_fd;
        Result<net::PidFd> exit_fd = net::PidFd::open(child->pid);  // Still our unreaped child: cannot be another.
        w.exit_fd = exit_fd ? std::optional<net::PidFd>(std::move(*exit_fd)) : std::nullopt;
        w.started = Clock::now();
        w.partial.clear();
        w.listening = false;
    }

    void drain(Worker& w) {
        char buf[65536];
        while (true) {
            const ssize_t n = ::read(w.out, buf, sizeof(buf));
            if (n > 0) {
                w.partial.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        std::size_t start = 0;
        for (std::size_t nl; (nl = w.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
            forward(w, w.partial.substr(start, nl - start));
        }
        w.partial.erase(0, start);
    }

    // One worker line out as one line of ours, tagged with the worker.
    void forward(Worker& w, const std::string& line) {
        // Most lines are per-connection events (two per connection at least):
        // tag them by text, after "event", without a parse and a re-dump.
        const std::size_t event = line.find("\"event\":\"");
        if (line.empty() || line.front() != '{' || event == std::string::npos) {
            write_line(fmt::format("[worker {}] {}", w.index, line));  // --log text
            return;
        }
        constexpr std::string_view kListening = "\"event\":\"listening\"";
        if (line.compare(event, kListening.size(), kListening) == 0) return on_listening(w, line);
        const std::size_t name_end = line.find('"', event + 9);
        if (name_end == std::string::npos) return write_line(line);
        write_line(line.substr(0, name_end + 1) + fmt::format(",\"worker\":{}", w.index) + line.substr(name_end + 1));
    }

    void on_listening(Worker& w, const std::string& line) {
        nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, false);
        if (j.is_discarded()) return;
        const std::string address = j.value("address", "");
        if (address.rfind("http://", 0) == 0) {
            w.metrics_url = address;
            rebuild_urls();
            return;  // Internal: the supervisor's own /metrics is the one to scrape.
        }
        w.listening = true;
        if (announced_ || !std::all_of(workers_.begin(), workers_.end(), [](const Worker& x) { return x.listening; }))
            return;
        announced_ = true;  // One "listening" for the whole server, once every worker is.
        j["workers"] = options_.workers;
        write_line(j.dump());
        if (!options_.http_url.empty()) {
            j["address"] = options_.http_url;
            write_line(j.dump());
        }
    }

    void reap(bool stopping) {
        for (Worker& w : workers_) {
            if (w.pid < 0) continue;
            int status = 0;
            if (::waitpid(w.pid, &status, WNOHANG) != w.pid) continue;
            drain(w);
            ::close(w.out);
            w.out = -1;
            w.pid = -1;
            w.exit_fd.reset();
            w.metrics_url.clear();
            rebuild_urls();
            if (stopping) continue;
            if (Clock::now() - w.started >= kStableAfter) w.backoff = kFirstBackoff;
            w.restart_at = Clock::now() + w.backoff;
            emit_error(w, fmt::format("worker {} {}; restarting in {} ms", w.index,
                                      WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                                          : fmt::format("exited with status {}", WEXITSTATUS(status)),
                                      w.backoff.count()));
            w.backoff = std::min<std::chrono::milliseconds>(w.backoff * 2, kMaxBackoff);
        }
    }

    void emit_error(const Worker& w, const std::string& message) {
        nlohmann::ordered_json j;
        j["event"] = "error";
        j["worker"] = w.index;
        j["message"] = message;
        write_line(j.dump());
    }

    static void write_line(std::string line) {
        line += '\n';
        // Our stdout may be slow to read; the workers' pipes then fill and they
        // drop events by their own rule (their writer never blocks a loop).
        for (std::size_t off = 0; off < line.size();) {
            const ssize_t n = ::write(STDOUT_FILENO, line.data() + off, line.size() - off);
            if (n > 0) {
                off += static_cast<std::size_t>(n);
            } else if (n < 0 && errno != EINTR) {
                return;
            }
        }
    }

    const WorkerSupervisorOptions& options_;
    std::string address_;
    std::vector<Worker> workers_;
    bool announced_ = false;
    std::mutex urls_mutex_;  // urls_ is read by the HTTP threads.
    std::vector<std::pair<int, std::string>> urls_;
};

}  // namespace

int run_worker_supervisor(WorkerSupervisorOptions options) {
    // Stop signals arrive on a descriptor the loop polls; workers get the default mask back.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    const int signal_fd = ::signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0) {
        fmt::print(stderr, "lifeline serve: signalfd: {}\n", std::strerror(errno));
        return 1;
    }
    ::signal(SIGPIPE, SIG_IGN);
    Result<std::pair<int, std::string>> reserved = reserve_address(options.listen);
    if (!reserved) {
        fmt::print(stderr, "lifeline serve: {}\n", reserved.error().message);
        return 1;
    }
    Supervisor supervisor(options, reserved->second);
    std::unique_ptr<runtime::HttpEndpoint> http;
    if (!options.http.empty()) {
        // Presence is per worker process here, not summed: no /presence (yet).
        runtime::HttpEndpoint::Pages pages;
        pages.metrics = [&supervisor] { return supervisor.metrics(); };
        pages.connections = [&supervisor] { return supervisor.connections(); };
        Result<std::unique_ptr<runtime::HttpEndpoint>> h = runtime::HttpEndpoint::start(options.http, pages);
        if (!h) {
            fmt::print(stderr, "lifeline serve: {}\n", h.error().message);
            return 1;
        }
        http = std::move(*h);
        options.http_url = http->url();
    }
    fmt::print(stderr, "lifeline serve: {} workers on {}{}\n", options.workers, reserved->second,
               http ? ", summed /metrics on " + http->url() : "");
    const int status = supervisor.run(signal_fd);
    ::close(reserved->first);
    ::close(signal_fd);
    return status;
}

}  // namespace lifeline::cli
