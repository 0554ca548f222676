// What a C++ programmer writes by hand to get heartbeat timeouts with
// standalone Asio (Debian's libasio-dev, no Boost): one io_context on one
// thread, an acceptor, and per connection a session object holding the socket
// and one asio::steady_timer as its read deadline. Every 8-byte message read
// is echoed and pushes the deadline out by --timeout-ms; when the deadline
// passes, the socket is closed. This is the idiom of Asio's own
// examples/cpp11/timeouts: shared_from_this keeps a session alive while a
// handler refers to it, and each re-arm cancels the pending wait.
//
//   asio_echo_server --listen 127.0.0.1:0 --timeout-ms 3000
//   -> prints "listening 127.0.0.1:PORT" once listening; SIGTERM or SIGINT ends it.
//
// A benchmark baseline for `lifeline bench --protocol echo`, not product code.
#include <sys/resource.h>

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace {

using asio::ip::tcp;
using Clock = asio::steady_timer::clock_type;

constexpr std::size_t kMessageSize = 8;
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // Out of descriptors: how long to stop accepting.

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "asio_echo_server: %s\n", what.c_str());
    std::exit(1);
}

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, std::chrono::milliseconds timeout)
        : socket_(std::move(socket)), deadline_(socket_.get_executor()), timeout_(timeout) {}

    void start() {
        asio::error_code ignored;
        socket_.set_option(tcp::no_delay(true), ignored);  // Echoes are tiny: no Nagle delay.
        push_deadline();
        read();
    }

private:
    void push_deadline() {
        // expires_after() cancels the wait in flight (its handler runs with
        // operation_aborted); a new wait takes its place.
        deadline_.expires_after(timeout_);
        deadline_.async_wait([self = shared_from_this()](const asio::error_code& error) {
            if (error) return;
            // The wait may have completed just before a read pushed the
            // deadline: only a deadline that really passed closes the socket.
            if (self->deadline_.expiry() > Clock::now()) return;
            asio::error_code ignored;
            self->socket_.close(ignored);  // The pending read completes with an error and the session ends.
        });
    }

    void read() {
        asio::async_read(socket_, asio::buffer(message_),
                         [self = shared_from_this()](const asio::error_code& error, std::size_t) {
                             if (error) {
                                 self->deadline_.cancel();  // Lets the last handler go, and the session with it.
                                 return;
                             }
                             self->push_deadline();
                             self->write();
                         });
    }

    void write() {
        asio::async_write(socket_, asio::buffer(message_),
                          [self = shared_from_this()](const asio::error_code& error, std::size_t) {
                              if (error) {
                                  asio::error_code ignored;
                                  self->socket_.close(ignored);
                                  self->deadline_.cancel();
                                  return;
                              }
                              self->read();
                          });
    }

    tcp::socket socket_;
    asio::steady_timer deadline_;
    std::chrono::milliseconds timeout_;
    std::array<char, kMessageSize> message_{};
};

class Server {
public:
    Server(asio::io_context& io, const tcp::endpoint& endpoint, std::chrono::milliseconds timeout)
        : acceptor_(io), pause_(io), timeout_(timeout) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(4096);
        accept();
    }

    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

private:
    void accept() {
        acceptor_.async_accept([this](const asio::error_code& error, tcp::socket socket) {
            if (!error) {
                std::make_shared<Session>(std::move(socket), timeout_)->start();
            } else if (error == asio::error::no_descriptors || error == asio::error::no_buffer_space ||
                       error == asio::error::no_memory) {
                // EMFILE: retrying at once would spin; wait for descriptors to free up.
                pause_.expires_after(kAcceptPause);
                pause_.async_wait([this](const asio::error_code&) { accept(); });
                return;
            } else if (error == asio::error::operation_aborted) {
                return;
            }
            accept();
        });
    }

    tcp::acceptor acceptor_;
    asio::steady_timer pause_;
    std::chrono::milliseconds timeout_;
};

void raise_fd_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) die(std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) die(std::string("setrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
}

tcp::endpoint parse_listen(std::string_view text) {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) die("--listen wants IPv4:PORT, got '" + std::string(text) + "'");
    const std::string port_text(text.substr(colon + 1));
    char* end = nullptr;
    const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port > 65535) die("bad port in '" + std::string(text) + "'");
    asio::error_code error;
    const asio::ip::address address = asio::ip::make_address(std::string(text.substr(0, colon)), error);
    if (error) die("bad address in '" + std::string(text) + "': " + error.message());
    return tcp::endpoint(address, static_cast<unsigned short>(port));
}

}  // namespace

int main(int argc, char** argv) {
    std::string listen_text;
    long timeout_ms = 3000;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--listen" && i + 1 < argc) {
            listen_text = argv[++i];
        } else if (arg == "--timeout-ms" && i + 1 < argc) {
            char* end = nullptr;
            timeout_ms = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || timeout_ms <= 0) die("--timeout-ms wants a positive number of milliseconds");
        } else {
            die("usage: asio_echo_server --listen IPv4:PORT [--timeout-ms 3000]");
        }
    }
    if (listen_text.empty()) die("usage: asio_echo_server --listen IPv4:PORT [--timeout-ms 3000]");
    raise_fd_limit();

    try {
        asio::io_context io(1);  // One thread, and the hint says so (Asio then wakes no other threads).
        Server server(io, parse_listen(listen_text), std::chrono::milliseconds(timeout_ms));
        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&io](const asio::error_code&, int) { io.stop(); });
        const tcp::endpoint local = server.local_endpoint();
        std::printf("listening %s:%u\n", local.address().to_string().c_str(), static_cast<unsigned>(local.port()));
        std::fflush(stdout);
        io.run();
    } catch (const std::exception& e) {
        die(e.what());
    }
    std::fprintf(stderr, "asio_echo_server: signal received, exiting\n");
    return 0;
}
