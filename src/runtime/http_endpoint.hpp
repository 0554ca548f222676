// The server's HTTP side door: /metrics (Prometheus text) and /connections
// (JSON), served by cpp-httplib on its own thread so it never slows the event
// loops. Internal to src/runtime.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "lifeline/result.hpp"

namespace httplib {
class Server;
}

namespace lifeline::runtime {

class HttpEndpoint {
public:
    using Body = std::function<std::string()>;
    struct Pages {
        Body metrics;      // GET /metrics
        Body connections;  // GET /connections
        // Empty: not served (404).
        Body presence_list;                                       // GET /presence
        std::function<std::string(const std::string&)> presence;  // GET /presence/{id}; "" = unknown (404)
    };
    // Binds `address` ("127.0.0.1:9100"; port 0 picks one) and serves until destroyed.
    static Result<std::unique_ptr<HttpEndpoint>> start(const std::string& address, Pages pages);
    // "http://127.0.0.1:9100", with the port actually bound.
    const std::string& url() const { return url_; }
    ~HttpEndpoint();
    HttpEndpoint(const HttpEndpoint&) = delete;
    HttpEndpoint& operator=(const HttpEndpoint&) = delete;

private:
    HttpEndpoint() = default;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    std::string url_;
};

}  // namespace lifeline::runtime
