// Fault injection for labs, load generators and tests: a client that goes
// application-silent or stops reading, a server that streams filler to every
// client. `lifeline lab`, `lifeline bench` and the test suite use these to
// make the faults lifeline must detect; a production program has no use for
// them, which is why they are here and not on Client, Server or their options.
//
// Threads: create_*() on any thread; silence() and stop_reading() from any
// thread (they post to the client's loop). Errors: as Client::create() and
// Server::create(), plus invalid_argument for a push_rate above kMaxPushRate.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "lifeline/client.hpp"
#include "lifeline/result.hpp"
#include "lifeline/server.hpp"
#include "lifeline/time.hpp"

namespace lifeline::testing {

// ---- Server: push ------------------------------------------------------------

// The largest ServerFaults::push_rate: 1 GiB/s.
inline constexpr std::uint64_t kMaxPushRate = std::uint64_t{1} << 30;

struct ServerFaults {
    // Stream this many bytes of filler per second to every open connection
    // (framed: DATA payload bytes, after its HELLO; raw: plain bytes, from
    // accept). 0 = off; at most kMaxPushRate. A stand-in for a push gateway's
    // traffic. Filler goes through the ordinary output path: it counts as bytes
    // sent (bytes_out), never as hearing from the peer, and a peer that stops
    // reading is closed with slow_consumer once `output_budget` is used up.
    // One timer per event loop, at the loop tick (or 10 ms, whichever is
    // coarser), walks that loop's open connections: O(connections) per tick,
    // fine for labs, not for 1M connections. A budget smaller than one tick's
    // filler (rate x tick, or after a late wake-up up to rate x 100 ms) can
    // close even a peer that keeps up.
    std::uint64_t push_rate = 0;  // bytes per second
};

// Server::create() with faults. Errors name the field ("push_rate ...").
Result<std::unique_ptr<Server>> create_server(const ServerOptions& options, ServerCallbacks callbacks,
                                              const ServerFaults& faults);

// Parses a byte rate (bytes per second) as `lifeline serve --push` takes it: a
// plain byte count ("4096") or one with a binary suffix, K = 1024, M = 1024^2,
// G = 1024^3, either case ("64K" = 65536, "1M" = 1048576). No sign, fraction,
// spaces or other unit. Errors: "expected a byte rate like 64K or 1M, got
// '<text>'" (with "(too large)" when it does not fit 64 bits); the caller
// prefixes the option's name. Range checks are create_server()'s. Pure.
Result<std::uint64_t> parse_byte_rate(std::string_view text);

// ---- Client: silence and hung readers ----------------------------------------

struct ClientFaults {
    // silence() took effect; `last_sent` is when this connection last sent a
    // byte (what `lifeline bench` measures detection latency from).
    std::function<void(int connection, Instant now, Instant last_sent)> on_silenced;
};

// Client::create() with fault callbacks.
Result<std::unique_ptr<Client>> create_client(const ClientOptions& options, ClientCallbacks callbacks,
                                              ClientFaults faults);

// `connection` goes application-silent, like a hung peer whose kernel is
// alive: it sends nothing more (no PINGs) and judges nothing, but keeps
// reading, so it sees the server close it (on_down). on_silenced reports when.
// Out-of-range connections are ignored.
void silence(Client& client, int connection);

// A hung reader. Every connection stops reading its socket (EPOLLIN interest
// removed, so the kernel's receive buffer fills and the server sees a zero
// window) and stops judging the server (a hung reader cannot notice silence),
// but keeps sending its PINGs on schedule (framed) and flushing what it has
// queued. A connection still ends, once, on a socket error (the server giving
// up usually shows as a reset when our next PING reaches its closed socket),
// on the kernel's keepalive or user timeout, or on stop(). Sticky: there is no
// resume, and connections made afterwards (reconnects) do not read either.
// Idempotent.
void stop_reading(Client& client);

// The path to the server is lost without either side hearing of it (a NAT
// forgot the flow, a radio dropped): `connection` gives up on its socket
// without closing it (no FIN, no RST: the server keeps its end until it
// judges it), ends with local_close, and reconnects if ClientOptions::reconnect
// says so, presenting its resume token. The abandoned sockets stay open until
// the Client is destroyed. Not open connections are ignored.
void abandon(Client& client, int connection);

}  // namespace lifeline::testing
