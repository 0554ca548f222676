// A server and a client in one process: three heartbeats, then a clean stop.
#include <cstdio>
#include <lifeline/client.hpp>
#include <lifeline/server.hpp>
#include <thread>

int main() {
    lifeline::ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";  // Any free port.
    auto server = lifeline::Server::create(server_options, {}).value();
    std::thread server_thread([&] { server->run(); });

    lifeline::ClientOptions options;
    options.server = server->local_address();
    options.id = "example";
    options.heartbeat = lifeline::Duration::milliseconds(100);
    lifeline::Client* client = nullptr;
    int samples = 0;
    lifeline::ClientCallbacks callbacks;
    callbacks.on_rtt = [&](int, lifeline::Duration rtt) {
        std::printf("rtt %s\n", lifeline::to_string(rtt).c_str());
        if (++samples == 3) client->stop();
    };
    callbacks.on_down = [](int, lifeline::DisconnectReason why) {
        std::printf("down: %s\n", std::string(lifeline::to_string(why)).c_str());
    };
    auto owned = lifeline::Client::create(options, callbacks).value();
    client = owned.get();
    client->run();
    server->stop();
    server_thread.join();
}
