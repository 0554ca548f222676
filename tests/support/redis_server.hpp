// Test support: a real redis-server (Debian's), started by the test on a free
// loopback port with no persistence and stopped with it. Ready means its log
// said "Ready to accept connections" (read from its stdout, with a deadline),
// not that a sleep ran out. RedisPlace runs it elsewhere (inside a network
// namespace the test made, on its address).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/child_process.hpp"

namespace lifeline::testing {

// A port nobody listens on now (the kernel's choice for port 0).
inline int free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        throw std::runtime_error("free_loopback_port: bind");
    ::close(fd);
    return ntohs(a.sin_port);
}

// A shell command's stdout (redis-cli's, here).
inline std::string command_output(const std::string& cmd) {
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        ::pclose(p);
    }
    return out;
}

struct RedisPlace {
    std::vector<std::string> prefix;  // e.g. {"ip", "netns", "exec", NS}: where it runs ({} = here).
    std::string bind = "127.0.0.1";
    int port = 0;                    // 0: a free loopback port.
    std::vector<std::string> extra;  // More redis-server arguments.
};

class RedisServer {
public:
    // Starts on a free port (another try on another port if that one was taken meanwhile).
    explicit RedisServer(RedisPlace place = {}) : place_(std::move(place)) {
        dir_ = std::filesystem::temp_directory_path() /
               ("lifeline-redis-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        std::filesystem::create_directories(dir_);
        for (int attempt = 0; attempt < 5 && !process_; ++attempt) {
            port_ = place_.port != 0 ? place_.port : free_loopback_port();
            start_process();
        }
        if (!process_) throw std::runtime_error("redis-server did not start (Debian: redis-server): " + last_log_);
    }
    ~RedisServer() {
        kill();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    int port() const { return port_; }
    const std::filesystem::path& dir() const { return dir_; }
    std::string url() const { return "redis://" + place_.bind + ":" + std::to_string(port_); }

    // SIGKILL, and wait for it to be gone (its data is lost: no persistence).
    void kill() {
        if (!process_) return;
        process_->signal(SIGCONT);
        process_->signal(SIGKILL);
        process_->wait_exit(std::chrono::seconds(10));
        process_.reset();
    }
    // A fresh, empty redis-server on the same port.
    void restart() {
        kill();
        start_process();
        if (!process_) throw std::runtime_error("redis-server did not restart on its port: " + last_log_);
    }
    void pause() { process_->signal(SIGSTOP); }
    void resume() { process_->signal(SIGCONT); }

    // redis-cli ARGS against this server; its stdout.
    std::string cli(const std::vector<std::string>& args) const {
        std::string cmd;
        for (const std::string& p : place_.prefix) cmd += p + " ";
        cmd += "redis-cli -h " + place_.bind + " -p " + std::to_string(port_);
        for (const std::string& a : args) cmd += " '" + a + "'";
        return command_output(cmd);
    }

private:
    static int& counter() {
        static int n = 0;
        return n;
    }
    void start_process() {
        std::vector<std::string> argv = place_.prefix;
        if (!argv.empty()) argv.insert(argv.begin(), "/usr/bin/env");
        for (const std::string& a :
             {std::string("/usr/bin/redis-server"), std::string("--port"), std::to_string(port_), std::string("--bind"),
              place_.bind, std::string("--save"), std::string(""), std::string("--appendonly"), std::string("no"),
              std::string("--dir"), dir_.string(), std::string("--daemonize"), std::string("no"),
              std::string("--logfile"), std::string("")})
            argv.push_back(a);
        argv.insert(argv.end(), place_.extra.begin(), place_.extra.end());
        // Off the loopback (a test's own namespace), Redis refuses clients unless told this is fine.
        if (place_.bind != "127.0.0.1") argv.insert(argv.end(), {"--protected-mode", "no"});
        auto p = std::make_unique<ChildProcess>(argv);
        last_log_.clear();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (std::chrono::steady_clock::now() < deadline) {
            std::optional<std::string> line = p->next_line(std::chrono::milliseconds(500));
            if (!line) {
                if (p->wait_exit(std::chrono::milliseconds(0)) >= 0) break;  // It exited (port taken?).
                continue;
            }
            last_log_ += *line + "\n";
            if (line->find("Ready to accept connections") != std::string::npos) {
                process_ = std::move(p);
                return;
            }
        }
        p->signal(SIGKILL);
        p->wait_exit(std::chrono::seconds(5));
    }

    RedisPlace place_;
    std::filesystem::path dir_;
    int port_ = 0;
    std::unique_ptr<ChildProcess> process_;
    std::string last_log_;
};

}  // namespace lifeline::testing
