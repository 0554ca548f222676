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
    // Binds `address` ("127.0.0.1:9100"; port 0 picks one) and serves until destroyed.
    static Result<std::unique_ptr<HttpEndpoint>> start(const std::string& address, Body metrics, Body connections);
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
