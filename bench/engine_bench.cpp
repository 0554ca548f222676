// What the public engine costs per heartbeat round trip, with no I/O: N
// connected pairs of ClientSession and ServerSession on a manual clock, and
// per item one full round trip of one pair:
//   client handle_timeout (PING due) -> poll_transmit -> server receive ->
//   server poll_transmit (PONG) -> client receive -> client poll_event (rtt),
// plus the server's own timer when it is due (its lazy re-arm).
// The baseline, in the same run, does the least a hand-written loop must: the
// same PING and PONG frames, encoded with codec.hpp's append_frame and decoded
// by a FrameDecoder per pair and direction, and the RTT taken from the echoed
// timestamp. The difference is what the protocol rules cost (timers, liveness,
// the RTT estimator, the PING token bucket, the outbox).
//
// Pairs are N = 1, 1,000 and 10,000, client ids 16 to 36 random bytes (as a
// real fleet's), phases random within the 1 s interval, and the pairs visited
// in deadline order, so each item is the pair whose PING is due next (cache
// misses included, as in a server with N connections). Fixed seed; setup is
// outside the timed loop. A row whose sessions did not produce one RTT sample
// per item is marked as an error, so a broken engine cannot post a fast number.
// Run: build/release/bench/engine_bench (docs/BENCHMARKS.md, "Engine cost per heartbeat").
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/server_session.hpp"

namespace lifeline {
namespace {

constexpr Duration kInterval = Duration::seconds(1);
constexpr Duration kOneWay = Duration::microseconds(20);  // The manual network's latency.
const Instant kStart = Instant::from_ns(1'000'000'000);

std::vector<std::string> random_ids(std::size_t n, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> length(16, 36), letter('a', 'z');
    std::vector<std::string> ids(n);
    for (std::size_t i = 0; i < n; ++i) {
        ids[i].resize(static_cast<std::size_t>(length(rng)));
        for (char& c : ids[i]) c = static_cast<char>(letter(rng));
        ids[i] += "-" + std::to_string(i);  // Unique, as session ids are.
        ids[i].resize(std::min<std::size_t>(ids[i].size(), 36));
    }
    return ids;
}

// Random phases within one interval, sorted: visiting pairs in this order
// cycles through their deadlines in time order.
std::vector<Duration> sorted_phases(std::size_t n, std::mt19937_64& rng) {
    std::uniform_int_distribution<std::int64_t> phase(0, kInterval.ns() - 1);
    std::vector<Duration> phases(n);
    for (auto& p : phases) p = Duration::nanoseconds(phase(rng));
    std::sort(phases.begin(), phases.end());
    return phases;
}

template <class Session>
void move_bytes(Session& from, std::vector<std::uint8_t>& wire) {
    wire.clear();
    while (auto t = from.poll_transmit()) wire.insert(wire.end(), t->bytes.begin(), t->bytes.end());
}

struct Pair {
    ClientSessionConfig client_config;  // Per pair: it holds the id.
    std::unique_ptr<ServerSession> server;
    std::unique_ptr<ClientSession> client;
};

void BM_engine_round_trip(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::mt19937_64 rng(42);
    const auto ids = random_ids(n, rng);
    const auto phases = sorted_phases(n, rng);
    ServerSessionConfig server_config;
    server_config.heartbeat = kInterval;
    std::vector<std::unique_ptr<Pair>> pairs(n);
    std::vector<std::uint8_t> wire;
    for (std::size_t i = 0; i < n; ++i) {
        auto& p = pairs[i] = std::make_unique<Pair>();
        p->client_config.id = ids[i];
        p->client_config.heartbeat = kInterval;
        p->client_config.timeout = kInterval * 3;
        // Connected at its phase: its first PING falls due one interval later.
        const Instant at = kStart + phases[i];
        p->server = std::make_unique<ServerSession>(server_config, i + 1, at);
        p->client = std::make_unique<ClientSession>(p->client_config, at);
        move_bytes(*p->client, wire);
        p->server->receive(wire, at);
        move_bytes(*p->server, wire);
        p->client->receive(wire, at);
        while (p->server->poll_event()) {
        }
        while (p->client->poll_event()) {
        }
        if (p->client->state() != ClientSession::State::open) {
            state.SkipWithError("a handshake failed");
            return;
        }
    }
    std::size_t next = 0;
    std::int64_t rtts = 0;
    for (auto _ : state) {
        Pair& p = *pairs[next];
        next = next + 1 == n ? 0 : next + 1;
        const Instant now = p.client->next_timeout();  // Its PING is due.
        p.client->handle_timeout(now);
        move_bytes(*p.client, wire);
        const Instant at_server = now + kOneWay;
        if (at_server >= p.server->next_timeout()) p.server->handle_timeout(at_server);
        p.server->receive(wire, at_server);
        move_bytes(*p.server, wire);
        p.client->receive(wire, at_server + kOneWay);
        while (auto e = p.client->poll_event()) rtts += e->kind == SessionEventKind::rtt;
        while (auto e = p.server->poll_event()) benchmark::DoNotOptimize(e->kind);
    }
    if (rtts != static_cast<std::int64_t>(state.iterations())) state.SkipWithError("not one RTT sample per round trip");
    state.SetItemsProcessed(state.iterations());
}

// The baseline: the same frames, encoded and decoded by hand, nothing else.
struct HandPair {
    FrameDecoder at_server{DecoderRole::server};
    FrameDecoder at_client{DecoderRole::client};
    Instant next_ping;
    std::uint64_t seq = 0;
};

std::optional<Frame> decode_one(FrameDecoder& decoder, std::span<const std::uint8_t> bytes) {
    auto step = decoder.next(bytes);
    return step.error ? std::nullopt : std::move(step.frame);
}

void BM_baseline_round_trip(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::mt19937_64 rng(42);
    const auto ids = random_ids(n, rng);
    const auto phases = sorted_phases(n, rng);
    std::vector<std::unique_ptr<HandPair>> pairs(n);
    std::vector<std::uint8_t> wire;
    for (std::size_t i = 0; i < n; ++i) {
        auto& p = pairs[i] = std::make_unique<HandPair>();
        p->next_ping = kStart + phases[i] + kInterval;
        // The decoders' first-frame rules: HELLO and WELCOME pass first, as on a real connection.
        wire.clear();
        (void)append_frame(wire, Hello{kProtocolVersion, 1000, 3000, ids[i], {}, {}});
        const bool hello = decode_one(p->at_server, wire).has_value();
        wire.clear();
        (void)append_frame(wire, Welcome{kProtocolVersion, 1000, 3000, ids[i], {}});
        if (!hello || !decode_one(p->at_client, wire)) {
            state.SkipWithError("a handshake frame did not decode");
            return;
        }
    }
    std::size_t next = 0;
    std::int64_t rtts = 0;
    for (auto _ : state) {
        HandPair& p = *pairs[next];
        next = next + 1 == n ? 0 : next + 1;
        const Instant now = p.next_ping;
        p.next_ping = now + kInterval;
        wire.clear();
        (void)append_frame(wire, Ping{++p.seq, static_cast<std::uint64_t>(now.ns_since_epoch())});
        const auto ping = decode_one(p.at_server, wire);
        if (!ping || !std::holds_alternative<Ping>(*ping)) {
            state.SkipWithError("a PING did not decode");
            break;
        }
        const Ping& echoed = std::get<Ping>(*ping);
        wire.clear();
        (void)append_frame(wire, Pong{echoed.seq, echoed.sent_at});
        const auto pong = decode_one(p.at_client, wire);
        if (!pong || !std::holds_alternative<Pong>(*pong) || std::get<Pong>(*pong).seq != p.seq) {
            state.SkipWithError("a PONG did not decode");
            break;
        }
        const Instant received = now + kOneWay + kOneWay;
        const Duration rtt = received - Instant::from_ns(static_cast<std::int64_t>(std::get<Pong>(*pong).sent_at));
        benchmark::DoNotOptimize(rtt);
        ++rtts;
    }
    state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_engine_round_trip)->Arg(1)->Arg(1000)->Arg(10000);
BENCHMARK(BM_baseline_round_trip)->Arg(1)->Arg(1000)->Arg(10000);

}  // namespace
}  // namespace lifeline

BENCHMARK_MAIN();
