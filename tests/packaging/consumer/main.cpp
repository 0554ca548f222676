// A program outside the lifeline tree, built against an installed lifeline
// (tests/packaging): the public engine on a manual clock, plus one socket helper.
// Prints "granted timeout <duration>" and exits 0, or says what failed and exits 1.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <vector>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "lifeline/time.hpp"

namespace {

// Everything `session` has to write, as one byte string.
template <class Session>
std::vector<std::uint8_t> drain(Session& session) {
    std::vector<std::uint8_t> bytes;
    while (std::optional<lifeline::Transmit> t = session.poll_transmit())
        bytes.insert(bytes.end(), t->bytes.begin(), t->bytes.end());
    return bytes;
}

// The first `opened` event of `session`, if any.
template <class Session>
std::optional<lifeline::SessionEvent> opened(Session& session) {
    while (std::optional<lifeline::SessionEvent> e = session.poll_event())
        if (e->kind == lifeline::SessionEventKind::opened) return e;
    return std::nullopt;
}

int fail(const char* what) {
    std::fprintf(stderr, "consumer: %s\n", what);
    return 1;
}

}  // namespace

int main() {
    // The manual clock: time moves only when this program says so.
    lifeline::Instant now = lifeline::Instant::from_ns(1'000'000'000);

    lifeline::ServerSessionConfig server_config;
    server_config.max_timeout = lifeline::Duration::seconds(10);
    lifeline::ClientSessionConfig client_config;
    client_config.heartbeat = lifeline::Duration::seconds(2);
    client_config.timeout = lifeline::Duration::seconds(6);
    if (!server_config.validate() || !client_config.validate()) return fail("default configs do not validate");

    lifeline::ServerSession server(server_config, 1, now);
    lifeline::ClientSession client(client_config, now);

    const std::vector<std::uint8_t> hello = drain(client);
    if (hello.empty()) return fail("the client wrote no HELLO");
    now += lifeline::Duration::milliseconds(5);
    server.receive(hello, now);
    const std::vector<std::uint8_t> welcome = drain(server);
    if (welcome.empty()) return fail("the server answered the HELLO with nothing");
    now += lifeline::Duration::milliseconds(5);
    client.receive(welcome, now);

    const std::optional<lifeline::SessionEvent> server_opened = opened(server);
    const std::optional<lifeline::SessionEvent> client_opened = opened(client);
    if (!server_opened || !client_opened) return fail("the handshake did not open both sessions");
    if (client.state() != lifeline::ClientSession::State::open) return fail("the client is not open");
    std::printf("granted timeout %s\n", lifeline::to_string(client_opened->timeout).c_str());

    // One socket helper on a socket that is never connected: no network.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return fail("socket() failed");
    const lifeline::Result<lifeline::sys::EffectiveKeepalive> keepalive = lifeline::sys::read_keepalive(fd);
    ::close(fd);
    if (!keepalive) return fail("read_keepalive failed");
    std::printf("keepalive %s idle %s\n", keepalive->enabled ? "on" : "off",
                lifeline::to_string(keepalive->idle).c_str());
    return 0;
}
