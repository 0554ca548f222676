// `lifeline presence get|list|watch`: the fleet's presence in Redis (what
// `serve --presence redis://...` writes), or one server's embedded presence
// over its --http endpoint.
#include <fmt/core.h>
#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/stop_signals.hpp"
#include "lifeline/presence_reader.hpp"

namespace lifeline::cli {

namespace {

using nlohmann::json;

struct PresenceOptions {
    std::string redis;
    std::string http;
    bool json_output = false;
    std::string id;
    std::string gateway;
    PresenceWatch watch;
};

std::string clock_text(std::int64_t unix_ms) {
    const std::time_t seconds = unix_ms / 1000;
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return fmt::format("{}.{:03}Z", buf, unix_ms % 1000);
}

json to_json(const FleetPresence& p) {
    json j = {{"id", p.id},     {"online", p.online}, {"epoch", p.epoch},      {"gateway", p.gateway},
              {"conn", p.conn}, {"peer", p.peer},     {"since_ms", p.since_ms}};
    if (!p.online && !p.last_reason.empty()) {
        j["last_reason"] = p.last_reason;
        j["detected_after_ms"] = p.detected_after_ms;
    }
    return j;
}

json to_json(const PresenceEvent& e) {
    json j = {{"stream_id", e.stream_id}, {"event", e.event}, {"id", e.id},          {"epoch", e.epoch},
              {"gateway", e.gateway},     {"peer", e.peer},   {"time_ms", e.time_ms}};
    if (e.event == "offline") {
        j["reason"] = e.reason;
        j["detected_after_ms"] = e.detected_after_ms;
    }
    return j;
}

FleetPresence from_json(const json& j) {
    FleetPresence p;
    p.id = j.value("id", "");
    p.online = j.value("online", false);
    p.epoch = j.value("epoch", std::uint64_t{0});
    p.gateway = j.value("gateway", "");
    p.conn = j.value("conn", std::uint64_t{0});
    p.peer = j.value("peer", "");
    p.since_ms = j.value("since_ms", std::int64_t{0});
    p.last_reason = j.value("last_reason", "");
    return p;
}

std::string describe(const FleetPresence& p) {
    const std::string where = p.gateway.empty() ? "" : " on " + p.gateway;
    if (p.online)
        return fmt::format("{} online{} since {} (epoch {}, conn {}, peer {})", p.id, where, clock_text(p.since_ms),
                           p.epoch, p.conn, p.peer);
    return fmt::format("{} offline since {}: {} (detected after {} ms; last{}, epoch {}, peer {})", p.id,
                       clock_text(p.since_ms), p.last_reason.empty() ? "unknown" : p.last_reason, p.detected_after_ms,
                       where.empty() ? " here" : where, p.epoch, p.peer);
}

std::string describe(const PresenceEvent& e) {
    if (e.event == "online")
        return fmt::format("{} online  {} on {} (epoch {}, peer {})", clock_text(e.time_ms), e.id, e.gateway, e.epoch,
                           e.peer);
    return fmt::format("{} offline {} on {} (epoch {}): {}, detected after {} ms", clock_text(e.time_ms), e.id,
                       e.gateway, e.epoch, e.reason, e.detected_after_ms);
}

int fail(const std::string& message) {
    fmt::print(stderr, "lifeline presence: {}\n", message);
    return 1;
}

// --http: the embedded presence of one server (GET /presence[/ID]).
Result<json> http_get(const std::string& address, const std::string& path) {
    httplib::Client client("http://" + address);
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    httplib::Result r = client.Get(path);
    if (!r) return make_error(Errc::system, "http://" + address + path + ": " + httplib::to_string(r.error()));
    if (r->status == 404) return json();
    if (r->status != 200)
        return make_error(Errc::invalid_argument, "http://" + address + path + ": HTTP " + std::to_string(r->status));
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) return make_error(Errc::invalid_argument, "http://" + address + path + ": not JSON");
    return j;
}

void print_records(const std::vector<FleetPresence>& records, bool as_json) {
    if (as_json) {
        json all = json::array();
        for (const FleetPresence& p : records) all.push_back(to_json(p));
        fmt::print("{}\n", all.dump());
        return;
    }
    for (const FleetPresence& p : records) fmt::print("{}\n", describe(p));
    fmt::print("{} online\n", records.size());
}

int run_get(const PresenceOptions& o) {
    std::optional<FleetPresence> record;
    if (!o.http.empty()) {
        Result<json> j = http_get(o.http, "/presence/" + o.id);
        if (!j) return fail(j.error().message);
        if (!j->is_null()) record = from_json(*j);
    } else {
        Result<PresenceReader> reader = PresenceReader::connect(o.redis);
        if (!reader) return fail(reader.error().message);
        Result<std::optional<FleetPresence>> got = reader->get(o.id);
        if (!got) return fail(got.error().message);
        record = *got;
    }
    if (!record) {
        if (o.json_output)
            fmt::print("{}\n", json{{"id", o.id}, {"known", false}}.dump());
        else
            fmt::print("{}: no record (never seen, or past the offline retention)\n", o.id);
        return 3;
    }
    fmt::print("{}\n", o.json_output ? to_json(*record).dump() : describe(*record));
    return 0;
}

int run_list(const PresenceOptions& o) {
    std::vector<FleetPresence> records;
    if (!o.http.empty()) {
        Result<json> j = http_get(o.http, "/presence");
        if (!j) return fail(j.error().message);
        for (const json& r : *j) {
            if (r.value("online", false)) records.push_back(from_json(r));
        }
    } else {
        Result<PresenceReader> reader = PresenceReader::connect(o.redis);
        if (!reader) return fail(reader.error().message);
        Result<std::vector<FleetPresence>> all = reader->list(o.gateway);
        if (!all) return fail(all.error().message);
        records = std::move(*all);
    }
    print_records(records, o.json_output);
    return 0;
}

int run_watch(const PresenceOptions& o) {
    if (o.redis.empty())
        return fail(
            "watch needs --presence redis://...: the embedded presence has no stream (a server's own "
            "event lines carry its `offline` events)");
    StopSignals signals;
    std::atomic<bool> stopping{false};
    signals.on_signal([&stopping] { stopping.store(true); });
    Result<PresenceReader> reader = PresenceReader::connect(o.redis);
    if (!reader) return fail(reader.error().message);
    Result<void> r = reader->watch(
        o.watch,
        [&o](const PresenceEvent& e) {
            fmt::print("{}\n", o.json_output ? to_json(e).dump() : describe(e));
            std::fflush(stdout);
            return true;
        },
        [&stopping] { return stopping.load(); });
    if (!r) return fail(r.error().message);
    return 0;
}

void add_source_options(CLI::App& sub, PresenceOptions& o) {
    sub.add_option("--presence", o.redis,
                   "The fleet's Redis, as given to `serve --presence` (redis://HOST:PORT[/DB]; any node of a cluster)")
        ->type_name("URL");
    sub.add_option("--http", o.http, "Or one server's embedded presence: its --http address (HOST:PORT)");
    sub.add_flag("--json", o.json_output, "JSON (one object, or one line per event) instead of text");
}

}  // namespace

void add_presence_command(CLI::App& app, Action& run) {
    auto o = std::make_shared<PresenceOptions>();
    CLI::App* presence = app.add_subcommand(
        "presence",
        "Who is online, where, and why those who left went offline: the fleet's presence in Redis\n"
        "(`serve --presence redis://...`, fenced by epoch) or one server's embedded presence (--http).");
    presence->require_subcommand(1);
    CLI::App* get = presence->add_subcommand("get",
                                             "One client id: online (gateway, since) or offline (reason); "
                                             "exit status 3 if unknown");
    get->add_option("id", o->id, "The client id")->required();
    CLI::App* list = presence->add_subcommand("list", "Every id online now, on one gateway or all");
    list->add_option("--gateway", o->gateway, "Only this gateway's sessions (Redis only)");
    CLI::App* watch = presence->add_subcommand(
        "watch", "Follow the online/offline event stream (Redis), one line per event, flushed as it arrives");
    watch->add_option("--group", o->watch.group,
                      "Read through this consumer group (created if missing): a restarted watcher with the same\n"
                      "--consumer gets what it was given and never acknowledged, so nothing is lost");
    watch->add_option("--consumer", o->watch.consumer, "Consumer name in --group")->capture_default_str();
    watch->add_flag("--from-start", o->watch.from_start, "From the stream's start (default: from now)");
    watch->add_option("--stream", o->watch.stream, "The stream (serve --presence-stream)")->capture_default_str();
    watch->add_option("--count", o->watch.count, "Stop after this many events (default: until SIGINT)");
    for (CLI::App* sub : {get, list, watch}) add_source_options(*sub, *o);
    auto choose = [o, &run](int (*action)(const PresenceOptions&)) {
        run = [o, action] {
            if (o->redis.empty() == o->http.empty())
                return fail("give one of --presence redis://... or --http HOST:PORT");
            return action(*o);
        };
    };
    get->callback([choose] { choose(run_get); });
    list->callback([choose] { choose(run_list); });
    watch->callback([choose] { choose(run_watch); });
}

}  // namespace lifeline::cli
