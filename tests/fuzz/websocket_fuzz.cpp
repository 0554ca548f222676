// libFuzzer target for the WebSocket wire of ServerSession (upgrade parser,
// frame decoder, message assembly, close handling).
//
// Beyond "does not crash" it checks:
//   1. split invariance: the stream fed whole and fed in chunks gives the same
//      events (kinds, payloads, reasons) and the same bytes back;
//   2. at most one `closed`, always the last event.
// A violated property calls __builtin_trap(), which libFuzzer reports.
//
// Input layout: byte 0 picks whether a valid upgrade request is prepended
// (bit 0) and the seed of the chunk sizes (bits 1-7); the rest is the stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "lifeline/engine/server_session.hpp"

namespace {

using lifeline::Duration;
using lifeline::Instant;
using lifeline::ServerSession;
using lifeline::ServerSessionConfig;
using lifeline::SessionEvent;
using lifeline::SessionEventKind;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "websocket_fuzz: property violated: %s\n", what);
    __builtin_trap();
}

void check(bool ok, const char* what) {
    if (!ok) fail(what);
}

const std::string kUpgrade =
    "GET /f?id=fuzz HTTP/1.1\r\nHost: f\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

struct Outcome {
    std::vector<std::uint8_t> sent;
    std::vector<SessionEvent> events;
};

ServerSessionConfig config() {
    ServerSessionConfig c;
    c.websocket = true;
    c.max_body_size = 256;
    c.server_pings = true;
    return c;
}

Outcome run(const ServerSessionConfig& c, std::span<const std::uint8_t> stream, unsigned seed) {
    const Instant now = Instant::from_ns(1'000'000'000);
    ServerSession s(c, 1, now);
    Outcome out;
    std::size_t i = 0;
    unsigned state = seed * 2654435761u + 1;
    while (i < stream.size()) {
        state = state * 1103515245u + 12345u;
        const std::size_t n = seed == 0 ? stream.size() : 1 + (state >> 16) % 64;
        const std::size_t take = std::min(n, stream.size() - i);
        s.receive(stream.subspan(i, take), now);
        i += take;
        while (auto t = s.poll_transmit()) out.sent.insert(out.sent.end(), t->bytes.begin(), t->bytes.end());
        while (auto e = s.poll_event()) out.events.push_back(std::move(*e));
    }
    return out;
}

bool same(const SessionEvent& a, const SessionEvent& b) {
    return a.kind == b.kind && a.reason == b.reason && a.payload == b.payload && a.text == b.text &&
           a.client_id == b.client_id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const bool with_upgrade = (data[0] & 1) != 0;
    const unsigned seed = data[0] >> 1;
    std::vector<std::uint8_t> stream;
    if (with_upgrade) stream.assign(kUpgrade.begin(), kUpgrade.end());
    stream.insert(stream.end(), data + 1, data + size);
    const ServerSessionConfig c = config();
    const Outcome whole = run(c, stream, 0);
    const Outcome chunked = run(c, stream, seed == 0 ? 1 : seed);
    check(whole.sent == chunked.sent, "the bytes sent back depend on how TCP split the input");
    check(whole.events.size() == chunked.events.size(), "the number of events depends on the split");
    for (std::size_t i = 0; i < whole.events.size(); ++i)
        check(same(whole.events[i], chunked.events[i]), "an event depends on the split");
    std::size_t closed = 0;
    for (std::size_t i = 0; i < whole.events.size(); ++i) {
        if (whole.events[i].kind != SessionEventKind::closed) continue;
        ++closed;
        check(i + 1 == whole.events.size(), "an event after closed");
    }
    check(closed <= 1, "closed twice");
    return 0;
}
