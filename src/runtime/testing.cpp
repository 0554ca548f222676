// lifeline/testing.hpp: fault injection, reaching into Client and Server
// through their one friend, testing::Access.
#include "lifeline/testing.hpp"

#include <limits>
#include <string>
#include <utility>

#include "runtime/client_connection.hpp"
#include "runtime/server_impl.hpp"
#include "runtime/server_worker.hpp"

namespace lifeline::testing {

struct Access {
    static std::unique_ptr<Server> wrap(std::unique_ptr<Server::Impl> impl) {
        return std::unique_ptr<Server>(new Server(std::move(impl)));
    }
    static std::unique_ptr<Client> wrap(std::unique_ptr<Client::Impl> impl) {
        return std::unique_ptr<Client>(new Client(std::move(impl)));
    }
    static Client::Impl& impl(Client& client) { return *client.impl_; }
};

Result<std::unique_ptr<Server>> create_server(const ServerOptions& options, ServerCallbacks callbacks,
                                              const ServerFaults& faults) {
    Result<std::unique_ptr<Server::Impl>> impl = runtime::make_server(options, std::move(callbacks), faults);
    if (!impl) return impl.error();
    return Access::wrap(std::move(*impl));
}

Result<std::unique_ptr<Client>> create_client(const ClientOptions& options, ClientCallbacks callbacks,
                                              ClientFaults faults) {
    Result<std::unique_ptr<Client::Impl>> impl = runtime::make_client(options, std::move(callbacks), std::move(faults));
    if (!impl) return impl.error();
    return Access::wrap(std::move(*impl));
}

void silence(Client& client, int connection) {
    Client::Impl* impl = &Access::impl(client);
    if (connection < 0 || connection >= static_cast<int>(impl->conns.size())) return;
    impl->loop->post([impl, connection] { impl->conns[static_cast<std::size_t>(connection)]->silence(); });
}

void stop_reading(Client& client) {
    Client::Impl* impl = &Access::impl(client);
    impl->loop->post([impl] {
        if (impl->reading_stopped) return;
        impl->reading_stopped = true;
        for (auto& c : impl->conns) c->stop_reading();
    });
}

void abandon(Client& client, int connection) {
    Client::Impl* impl = &Access::impl(client);
    if (connection < 0 || connection >= static_cast<int>(impl->conns.size())) return;
    impl->loop->post([impl, connection] { impl->conns[static_cast<std::size_t>(connection)]->abandon(); });
}

Result<std::uint64_t> parse_byte_rate(std::string_view text) {
    auto bad = [text](std::string_view why) {
        return make_error(Errc::invalid_argument,
                          "expected a byte rate like 64K or 1M, got '" + std::string(text) + "'" + std::string(why));
    };
    std::size_t digits = 0;
    std::uint64_t value = 0;
    for (; digits < text.size() && text[digits] >= '0' && text[digits] <= '9'; ++digits) {
        if (__builtin_mul_overflow(value, std::uint64_t{10}, &value) ||
            __builtin_add_overflow(value, static_cast<std::uint64_t>(text[digits] - '0'), &value))
            return bad(" (too large)");
    }
    if (digits == 0) return bad("");
    const std::string_view suffix = text.substr(digits);
    unsigned shift = 0;
    if (suffix == "K" || suffix == "k") {
        shift = 10;
    } else if (suffix == "M" || suffix == "m") {
        shift = 20;
    } else if (suffix == "G" || suffix == "g") {
        shift = 30;
    } else if (!suffix.empty()) {
        return bad("");
    }
    if (shift > 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) return bad(" (too large)");
    return value << shift;
}

}  // namespace lifeline::testing
