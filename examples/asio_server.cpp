// A lifeline server on standalone Asio: an acceptor, and per connection a
// ServerSession driven by lifeline::AsioConnection (include/lifeline/asio.hpp)
// over the accepted socket. `lifeline connect` talks to it; it answers PINGs,
// echoes DATA, and prints one line per event. SIGINT or SIGTERM stops it.
//
//   asio_server 127.0.0.1:0      # prints "listening 127.0.0.1:PORT" first
#include <csignal>
#include <cstdio>
#include <lifeline/asio.hpp>
#include <string>

namespace {

using asio::ip::tcp;
using Connection = lifeline::AsioConnection<lifeline::ServerSession>;

void on_event(Connection& c, const lifeline::SessionEvent& e) {
    using K = lifeline::SessionEventKind;
    const std::string id = c.session().client_id();
    switch (e.kind) {
        case K::hello:  // Only with ServerSessionConfig::admission, which this server leaves off.
            break;
        case K::opened:
            std::printf("opened id=%s timeout=%s\n", e.client_id.c_str(), to_string(e.timeout).c_str());
            break;
        case K::message:
            std::printf("message %s %.*s\n", id.c_str(), static_cast<int>(e.payload.size()),
                        reinterpret_cast<const char*>(e.payload.data()));
            (void)c.send(e.payload);  // Echo; an error only means the session is closing.
            break;
        case K::dead:
            std::printf("dead %s %s silence=%s budget=%s\n", id.c_str(), std::string(to_string(e.reason)).c_str(),
                        to_string(e.silence).c_str(), to_string(e.budget).c_str());
            break;
        case K::error:
            std::printf("error %s %s\n", id.c_str(), e.message.c_str());
            break;
        case K::closed:
            std::printf("closed %s %s\n", id.c_str(), std::string(to_string(e.reason)).c_str());
            break;
        case K::rtt:
            break;
    }
    std::fflush(stdout);
}

void accept_next(tcp::acceptor& acceptor, const lifeline::ServerSessionConfig& config, std::uint64_t& number) {
    acceptor.async_accept([&](std::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
            auto session = std::make_unique<lifeline::ServerSession>(config, ++number, lifeline::asio_now());
            Connection::create(std::move(socket), std::move(session), on_event)->start();
        }
        accept_next(acceptor, config, number);  // A failed accept (out of descriptors) costs only that peer.
    });
}

}  // namespace

int main(int argc, char** argv) {
    const std::string address = argc > 1 ? argv[1] : "127.0.0.1:0";
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) {
        std::fprintf(stderr, "usage: asio_server HOST:PORT\n");
        return 2;
    }
    try {
        asio::io_context io;  // One thread: every connection's handlers run here.
        const tcp::endpoint endpoint(asio::ip::make_address(address.substr(0, colon)),
                                     static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
        tcp::acceptor acceptor(io, endpoint);
        std::printf("listening %s:%u\n", acceptor.local_endpoint().address().to_string().c_str(),
                    acceptor.local_endpoint().port());
        std::fflush(stdout);
        lifeline::ServerSessionConfig config;  // Defaults; must outlive the sessions.
        std::uint64_t number = 0;
        accept_next(acceptor, config, number);
        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](std::error_code, int) { io.stop(); });
        io.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_server: %s\n", e.what());
        return 1;
    }
}
