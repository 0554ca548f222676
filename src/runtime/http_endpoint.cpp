#include "runtime/http_endpoint.hpp"

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "net/endpoint.hpp"

namespace lifeline::runtime {

namespace {

// GET /presence (every record) and /presence/{id} (one; 404 with
// {"known": false} for an id never seen or long forgotten).
void add_presence(httplib::Server& s, const HttpEndpoint::Pages& pages) {
    s.Get("/presence", [list = pages.presence_list](const httplib::Request&, httplib::Response& res) {
        res.set_content(list(), "application/json");
    });
    s.Get(R"(/presence/([^/]+))", [one = pages.presence](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        const std::string body = one(id);
        if (body.empty()) {
            res.status = 404;
            res.set_content(nlohmann::json{{"id", id}, {"online", false}, {"known", false}}.dump(
                                -1, ' ', false, nlohmann::json::error_handler_t::replace),
                            "application/json");
            return;
        }
        res.set_content(body, "application/json");
    });
}

}  // namespace

Result<std::unique_ptr<HttpEndpoint>> HttpEndpoint::start(const std::string& address, Pages pages) {
    Result<net::Endpoint> endpoint = net::parse_endpoint(address);
    if (!endpoint) return endpoint.error();
    std::unique_ptr<HttpEndpoint> http(new HttpEndpoint());
    http->server_ = std::make_unique<httplib::Server>();
    httplib::Server& s = *http->server_;
    // Two threads are plenty for a scrape endpoint and bound its cost; one
    // request per connection, so an idle keep-alive client cannot hold a thread.
    s.new_task_queue = [] { return new httplib::ThreadPool(2); };
    s.set_keep_alive_max_count(1);
    s.Get("/metrics", [metrics = pages.metrics](const httplib::Request&, httplib::Response& res) {
        res.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
    s.Get("/connections", [connections = pages.connections](const httplib::Request&, httplib::Response& res) {
        res.set_content(connections(), "application/json");
    });
    if (pages.presence_list && pages.presence) add_presence(s, pages);
    const std::string text = endpoint->to_string();
    std::string host = text.substr(0, text.rfind(':'));
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    const int port = endpoint->port() == 0 ? s.bind_to_any_port(host)
                                           : (s.bind_to_port(host, endpoint->port()) ? endpoint->port() : -1);
    if (port <= 0) {
        return Error{"cannot listen for HTTP on " + address + " (address in use, or not a local address?)"};
    }
    http->url_ = "http://" + text.substr(0, text.rfind(':')) + ":" + std::to_string(port);
    http->thread_ = std::thread([&s] { s.listen_after_bind(); });
    // stop() is a no-op until the server runs: wait for that (bounded), so a
    // Server destroyed right after create() cannot hang joining this thread.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!s.is_running() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    return http;
}

HttpEndpoint::~HttpEndpoint() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace lifeline::runtime
