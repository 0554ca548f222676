// What fleet presence costs Redis: N simulated sessions (no sockets) driving
// the real PresencePublisher and RedisLink against a real redis-server, then
// a steady-state window in which only refreshes run. Reported: Redis commands
// per second and Redis CPU per second, per 100,000 sessions, with the naive
// design measured in the same run as the baseline (one PEXPIRE per session
// per refresh interval, pipelined at the same pace).
//
//   presence_bench --redis redis://127.0.0.1:PORT --redis-pid PID --sessions 1000000 --ttl 30s --window 20s
//
// Redis' CPU comes from /proc/PID/stat (user + system), its command count
// from INFO stats. One JSON object on stdout per phase. Run by bench/presence.sh.
#include <hiredis/hiredis.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "lifeline/engine/presence_publisher.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/redis_link.hpp"

namespace {

using namespace lifeline;
using runtime::EventLoop;
using runtime::RedisLink;

struct Options {
    std::string redis;
    int redis_pid = 0;
    std::size_t sessions = 1'000'000;
    double ttl_s = 30;
    double window_s = 20;
};

std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Redis' CPU seconds so far (utime + stime of its process).
double redis_cpu_s(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string v;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> v; ++i) {
        if (i == 14 || i == 15) ticks += std::stod(v);
    }
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// INFO stats' total_commands_processed, through a blocking connection of its own.
std::uint64_t redis_commands(const runtime::RedisAddress& a) {
    redisContext* c = redisConnect(a.host.c_str(), a.port);
    if (c == nullptr || c->err != 0) return 0;
    auto* r = static_cast<redisReply*>(redisCommand(c, "INFO stats"));
    std::uint64_t n = 0;
    if (r != nullptr && r->type == REDIS_REPLY_STRING) {
        const std::string text(r->str, r->len);
        const std::size_t at = text.find("total_commands_processed:");
        if (at != std::string::npos) n = std::stoull(text.substr(at + 25));
    }
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return n;
}

// A realistic device id: "dev-" and 24 hex digits (28 bytes), unique per session.
std::string device_id(std::mt19937_64& rng, std::size_t i) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "dev-%08zx%016llx", i, static_cast<unsigned long long>(rng()));
    return buf;
}

struct Phase {
    const char* name;
    double seconds = 0;
    double redis_cpu = 0;
    std::uint64_t commands = 0;  // Redis' count: calls inside functions included.
    std::uint64_t sent = 0;      // Commands the gateway sent.
    double gateway_cpu = 0;      // This process (the publisher and its Redis link).
};

double own_cpu_s() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

nlohmann::json report(const Options& o, const Phase& p) {
    const double per_100k = 100'000.0 / static_cast<double>(o.sessions);
    return {{"phase", p.name},
            {"sessions", o.sessions},
            {"ttl_s", o.ttl_s},
            {"window_s", p.seconds},
            {"gateway_commands_per_s", static_cast<double>(p.sent) / p.seconds},
            {"gateway_commands_per_s_per_100k", static_cast<double>(p.sent) / p.seconds * per_100k},
            {"redis_commands_per_s", static_cast<double>(p.commands) / p.seconds},
            {"redis_commands_per_s_per_100k", static_cast<double>(p.commands) / p.seconds * per_100k},
            {"gateway_cpu_percent", 100.0 * p.gateway_cpu / p.seconds},
            {"redis_cpu_percent", 100.0 * p.redis_cpu / p.seconds},
            {"redis_cpu_percent_per_100k", 100.0 * p.redis_cpu / p.seconds * per_100k}};
}

class Bench : public runtime::LoopObject {
public:
    Bench(const Options& o, EventLoop& loop, runtime::RedisAddress address)
        : o_(o), loop_(loop), address_(address), publisher_(config(o)) {
        link_ = std::make_unique<RedisLink>(
            loop, address, Duration::seconds(30),
            RedisLink::Callbacks{
                [this] { ready(); },
                [](const std::string& why) { std::fprintf(stderr, "presence_bench: Redis: %s\n", why.c_str()); },
                [this](std::uint64_t tag, const RedisValue& v) {
                    if (tag >= kNaiveTag) return naive_reply();
                    publisher_.on_reply(tag, v);
                    pump();
                }});
    }
    void start() { link_->start(); }
    void on_io(std::uint32_t) override {}
    void on_timer() override { step(); }

private:
    static constexpr std::uint64_t kNaiveTag = std::uint64_t{1} << 62;
    enum class Stage { admitting, settling, batched, naive, done };

    static PresencePublisherConfig config(const Options& o) {
        PresencePublisherConfig c;
        c.gateway = "bench-gw";
        c.ttl = Duration::milliseconds(static_cast<std::int64_t>(o.ttl_s * 1000));
        c.buffer_limit = o.sessions;
        return c;
    }

    void ready() {
        publisher_.on_connected(loop_.now(), unix_ms());
        pump();
        loop_.schedule(*this, loop_.now() + Duration::milliseconds(10));
    }

    void pump() {
        for (const RedisCommand& c : publisher_.take_commands()) link_->send(c);
        publisher_.take_notices();
    }

    void begin(Stage s, const char* name) {
        stage_ = s;
        phase_ = Phase{name};
        phase_cpu0_ = redis_cpu_s(o_.redis_pid);
        phase_cmd0_ = redis_commands(address_);
        phase_t0_ = loop_.now();
        phase_sent0_ = sent();
        phase_own0_ = own_cpu_s();
    }
    std::uint64_t sent() const { return publisher_.counters().commands + naive_sent_; }
    void end() {
        phase_.seconds = (loop_.now() - phase_t0_).seconds_f();
        phase_.redis_cpu = redis_cpu_s(o_.redis_pid) - phase_cpu0_;
        phase_.commands = redis_commands(address_) - phase_cmd0_;
        phase_.sent = sent() - phase_sent0_;
        phase_.gateway_cpu = own_cpu_s() - phase_own0_;
        std::printf("%s\n", report(o_, phase_).dump().c_str());
        std::fflush(stdout);
    }

    void step() {
        const Instant now = loop_.now();
        switch (stage_) {
            case Stage::admitting:
                admit_some();
                break;
            case Stage::settling:
                if (publisher_.in_flight() == 0) begin(Stage::batched, "batched_refresh");
                break;
            case Stage::batched:
                publisher_.handle_timeout(now, unix_ms());
                pump();
                if (now - phase_t0_ >= window()) {
                    end();
                    begin(Stage::naive, "naive_pexpire_per_session");
                    naive_next_ = 0;
                }
                break;
            case Stage::naive:
                naive_some(now);
                if (now - phase_t0_ >= window()) {
                    end();
                    stage_ = Stage::done;
                    loop_.stop();
                    return;
                }
                break;
            case Stage::done:
                return;
        }
        loop_.schedule(*this, now + Duration::milliseconds(10));
    }

    Duration window() const { return Duration::milliseconds(static_cast<std::int64_t>(o_.window_s * 1000)); }

    // 20,000 admissions per 10 ms turn, with at most 100,000 unanswered.
    void admit_some() {
        if (admitted_ == 0) begin(Stage::admitting, "admission");
        while (admitted_ < o_.sessions && publisher_.in_flight() < 100'000 && batch_ < 20'000) {
            ids_.push_back(device_id(rng_, admitted_));
            const std::string peer = "10." + std::to_string(admitted_ >> 16 & 255) + "." +
                                     std::to_string(admitted_ >> 8 & 255) + "." + std::to_string(admitted_ & 255) +
                                     ":" + std::to_string(1024 + admitted_ % 60000);
            publisher_.online(ids_.back(), admitted_ + 1, peer, unix_ms());
            ++admitted_;
            ++batch_;
        }
        batch_ = 0;
        pump();
        if (admitted_ == o_.sessions && publisher_.in_flight() == 0) {
            end();
            stage_ = Stage::settling;
        }
    }

    // The baseline: each session's own PEXPIRE once per ttl/3, paced like the publisher's.
    void naive_some(Instant now) {
        const double due = static_cast<double>(o_.sessions) * (now - phase_t0_).seconds_f() / (o_.ttl_s / 3);
        const std::string ttl = std::to_string(static_cast<std::int64_t>(o_.ttl_s * 2000));
        while (static_cast<double>(naive_sent_) < due && naive_in_flight_ < 100'000) {
            const std::string& id = ids_[naive_next_++ % ids_.size()];
            link_->send({{"PEXPIRE", "lifeline:{" + id + "}", ttl}, kNaiveTag + naive_sent_});
            ++naive_sent_;
            ++naive_in_flight_;
        }
    }
    void naive_reply() { --naive_in_flight_; }

    const Options& o_;
    EventLoop& loop_;
    runtime::RedisAddress address_;
    PresencePublisher publisher_;
    std::unique_ptr<RedisLink> link_;
    std::mt19937_64 rng_{20261207};
    std::vector<std::string> ids_;
    std::size_t admitted_ = 0;
    std::size_t batch_ = 0;
    Stage stage_ = Stage::admitting;
    Phase phase_{"admission"};
    double phase_cpu0_ = 0;
    std::uint64_t phase_cmd0_ = 0;
    std::uint64_t phase_sent0_ = 0;
    double phase_own0_ = 0;
    Instant phase_t0_;
    std::size_t naive_next_ = 0;
    std::uint64_t naive_sent_ = 0;
    std::uint64_t naive_in_flight_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app(
        "presence_bench: fleet presence's cost to a real Redis, batched refresh against one PEXPIRE per "
        "session");
    app.add_option("--redis", o.redis, "redis://HOST:PORT")->required();
    app.add_option("--redis-pid", o.redis_pid, "The redis-server's pid (for its CPU)")->required();
    app.add_option("--sessions", o.sessions, "Simulated sessions")->capture_default_str();
    app.add_option("--ttl", o.ttl_s, "--presence-ttl in seconds")->capture_default_str();
    app.add_option("--window", o.window_s, "Seconds measured in each steady-state phase")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    Result<runtime::RedisAddress> address = runtime::parse_redis_url(o.redis);
    if (!address) {
        std::fprintf(stderr, "presence_bench: %s\n", address.error().message.c_str());
        return 2;
    }
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create({});
    if (!loop) {
        std::fprintf(stderr, "presence_bench: %s\n", loop.error().message.c_str());
        return 1;
    }
    Bench bench(o, **loop, *address);
    (*loop)->post([&bench] { bench.start(); });
    (*loop)->run();
    return 0;
}
