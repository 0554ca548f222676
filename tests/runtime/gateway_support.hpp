// Shared by the gateway API tests (gateway_test.cpp, gateway_admission_test.cpp):
// an in-process lifeline::Server whose callbacks record what they saw, and a
// framed client on a plain socket that sends exactly the frames it is told
// to. Every wait is on a frame, a socket or a callback, with a generous bound.
// Internal to tests/runtime.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lifeline/client.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/server.hpp"
#include "lifeline/testing.hpp"
#include "net/loopback_pair.hpp"

namespace lifeline::gateway_test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::Fd;

inline constexpr auto kLimit = 10s;       // Only a broken server (or real starvation) takes this long.
inline constexpr auto kBlockFor = 300ms;  // How long a "block" message holds its loop.

// ctest runs these suites again with LIFELINE_TEST_IO=uring ("uring." in
// front): every gateway behaviour must hold on both backends.
inline IoBackend test_io() {
    const char* io = std::getenv("LIFELINE_TEST_IO");
    return io != nullptr && std::string_view(io) == "uring" ? IoBackend::uring : IoBackend::epoll;
}

inline std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// What the server's callbacks saw, for the test thread to wait on.
struct Record {
    std::vector<ConnectionId> opened;
    std::vector<std::pair<ConnectionId, DisconnectReason>> closed;
    std::vector<std::pair<ConnectionId, std::string>> messages;
    std::vector<ConnectionId> writable;
    std::vector<Event> events;
};

class Gateway {
public:
    using Hook = std::function<void(Server&, ConnectionId)>;

    explicit Gateway(ServerOptions options = {}, std::function<Admission(const HelloInfo&)> on_hello = {},
                     Hook on_open = {}) {
        options.listen = "127.0.0.1:0";
        options.io = test_io();
        ServerCallbacks c;
        c.on_hello = std::move(on_hello);
        c.on_event = [this](const Event& e) { update([&](Record& r) { r.events.push_back(e); }); };
        c.on_open = [this, on_open = std::move(on_open)](ConnectionId conn) {
            update([&](Record& r) { r.opened.push_back(conn); });
            if (on_open) on_open(*server_, conn);
        };
        c.on_message = [this](ConnectionId conn, std::span<const std::uint8_t> p) {
            const std::string text(reinterpret_cast<const char*>(p.data()), p.size());
            if (text == "throw") throw std::runtime_error("the application choked on 'throw'");
            // The fault under test (a callback that blocks its loop), not synchronisation.
            if (text == "block") std::this_thread::sleep_for(kBlockFor);
            update([&](Record& r) { r.messages.emplace_back(conn, text); });
        };
        c.on_close = [this](ConnectionId conn, DisconnectReason reason, const std::string&) {
            update([&](Record& r) { r.closed.emplace_back(conn, reason); });
        };
        c.on_writable = [this](ConnectionId conn) { update([&](Record& r) { r.writable.push_back(conn); }); };
        auto created = Server::create(options, std::move(c));
        if (!created) throw std::runtime_error(created.error().message);
        server_ = std::move(*created);
        thread_ = std::thread([this] { server_->run(); });
    }
    ~Gateway() {
        server_->stop();
        thread_.join();
    }
    Server& server() { return *server_; }
    std::uint16_t port() const {
        const std::string a = server_->local_address();
        return static_cast<std::uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
    }
    // Waits until `ready(record)`; the record as it was then (or at the bound).
    Record wait(const std::function<bool(const Record&)>& ready, std::chrono::milliseconds limit = kLimit) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, limit, [&] { return ready(record_); });
        return record_;
    }
    Record now() {
        return wait([](const Record&) { return true; });
    }

private:
    void update(const std::function<void(Record&)>& change) {
        std::lock_guard lock(mutex_);
        change(record_);
        changed_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    Record record_;
    std::unique_ptr<Server> server_;
    std::thread thread_;
};

inline int closes_of(const Record& r, ConnectionId conn) {
    int n = 0;
    for (const auto& [c, reason] : r.closed) n += c == conn ? 1 : 0;
    return n;
}

// A framed client on a plain socket: sends exactly the frames it is told to.
class WireClient {
public:
    explicit WireClient(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        testing::check(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "connect");
    }
    explicit WireClient(Fd fd) : fd_(std::move(fd)) {}

    void send(const Frame& frame) {
        std::vector<std::uint8_t> out;
        ASSERT_TRUE(append_frame(out, frame).ok());
        ASSERT_EQ(::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
    }
    void hello(const std::string& id, const std::string& token = "", const std::string& credential = "") {
        send(Hello{kProtocolVersion, 100, 2000, id, token, credential});
    }
    // The next frame from the server; nullopt on EOF, error or the bound.
    std::optional<Frame> next(std::chrono::milliseconds limit = kLimit) {
        const auto deadline = Clock::now() + limit;
        while (true) {
            std::span<const std::uint8_t> input(buffer_.data() + consumed_, buffer_.size() - consumed_);
            FrameDecoder::Step step = decoder_.next(input);
            consumed_ = buffer_.size() - input.size();
            if (step.error) return std::nullopt;
            if (step.frame) return step.frame;
            buffer_.clear();
            consumed_ = 0;
            if (!read_some(deadline)) return std::nullopt;
        }
    }
    template <class T>
    std::optional<T> next_of(std::chrono::milliseconds limit = kLimit) {
        const auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            std::optional<Frame> f = next(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()));
            if (!f) return std::nullopt;
            if (const T* t = std::get_if<T>(&*f)) return *t;
        }
        return std::nullopt;
    }
    // True once the server closed its end (EOF or reset) within the bound.
    bool closed_by_server(std::chrono::milliseconds limit = kLimit) {
        const auto deadline = Clock::now() + limit;
        while (read_some(deadline)) buffer_.clear();
        return eof_;
    }
    int fd() const { return fd_.get(); }

private:
    bool read_some(Clock::time_point deadline) {
        pollfd p{fd_.get(), POLLIN, 0};
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) return false;
        std::uint8_t chunk[16 * 1024];
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
        if (n <= 0) {
            eof_ = true;
            return false;
        }
        buffer_.insert(buffer_.end(), chunk, chunk + n);
        return true;
    }

    Fd fd_;
    FrameDecoder decoder_{DecoderRole::client};
    std::vector<std::uint8_t> buffer_;
    std::size_t consumed_ = 0;
    bool eof_ = false;
};

// Opens `client` as `id`: its WELCOME (with the resume token it was issued).
inline Welcome open_as(WireClient& client, const std::string& id, const std::string& token = "") {
    client.hello(id, token);
    std::optional<Welcome> w = client.next_of<Welcome>();
    if (!w) throw std::runtime_error("no WELCOME for " + id);
    return *w;
}

// The server still answers `client`: a PING gets its PONG.
inline bool still_served(WireClient& client, std::uint64_t seq) {
    client.send(Ping{seq, 0});
    std::optional<Pong> pong = client.next_of<Pong>();
    return pong && pong->seq == seq;
}

inline std::optional<ConnectionId> wait_find(Gateway& g, const std::string& id) {
    std::optional<ConnectionId> found;
    g.wait([&](const Record&) { return (found = g.server().find(id)).has_value(); });
    return found;
}

}  // namespace lifeline::gateway_test
