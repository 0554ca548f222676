// Test support: run the real `lifeline` binary as a child process and read its
// JSON-lines events from stdout, waiting on the pipe (poll) with a deadline,
// never on fixed sleeps.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace lifeline::testing {

class ChildProcess {
public:
    using Json = nlohmann::json;
    using Clock = std::chrono::steady_clock;

    // argv[0] is the program path. `shell_prefix` (e.g. "ulimit -n 64;") runs the
    // program through /bin/sh with that prefix when non-empty. With
    // `stdout_path`, the child's stdout goes to that file instead of a pipe
    // (for chatty children nobody reads live: a full pipe would stall them).
    explicit ChildProcess(std::vector<std::string> argv, const std::string& shell_prefix = "",
                          const std::string& stdout_path = "") {
        int out[2], in[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork");
        if (pid_ == 0) {
            const int file = stdout_path.empty() ? -1 : ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(file >= 0 ? file : out[1], STDOUT_FILENO);
            ::dup2(in[0], STDIN_FILENO);
            ::setpgid(0, 0);
            if (!shell_prefix.empty()) {
                std::string cmd = shell_prefix + " exec";
                for (const auto& a : argv) cmd += " '" + a + "'";
                ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
            } else {
                std::vector<char*> args;
                for (auto& a : argv) args.push_back(a.data());
                args.push_back(nullptr);
                ::execv(args[0], args.data());
            }
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(in[0]);
        stdout_ = out[0];
        stdin_ = in[1];
    }
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ~ChildProcess() {
        if (pid_ > 0 && !exited_) {
            ::kill(pid_, SIGCONT);
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (stdout_ >= 0) ::close(stdout_);
        if (stdin_ >= 0) ::close(stdin_);
    }

    pid_t pid() const { return pid_; }
    void signal(int sig) { ::kill(pid_, sig); }
    void write_stdin(const std::string& text) { [[maybe_unused]] auto n = ::write(stdin_, text.data(), text.size()); }
    void close_stdin() {
        if (stdin_ >= 0) ::close(stdin_);
        stdin_ = -1;
    }

    // The next line of output (JSON or not), or nullopt at the deadline / end of output.
    std::optional<std::string> next_line(std::chrono::milliseconds limit) {
        const auto deadline = Clock::now() + limit;
        while (true) {
            const auto nl = buffer_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                lines_.push_back(line);
                return line;
            }
            // Round up: a sub-millisecond remainder must still poll, not return at once.
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd p{stdout_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
            char buf[65536];
            const ssize_t n = ::read(stdout_, buf, sizeof(buf));
            if (n <= 0) return std::nullopt;
            buffer_.append(buf, static_cast<std::size_t>(n));
        }
    }

    // The next event line, or nullopt at the deadline / end of output.
    std::optional<Json> next_event(std::chrono::milliseconds limit) {
        const auto deadline = Clock::now() + limit;
        while (true) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            auto line = next_line(left);
            if (!line) return std::nullopt;
            Json j = Json::parse(*line, nullptr, false);
            if (j.is_discarded()) continue;  // Not an event line.
            events_.push_back(j);
            return j;
        }
    }

    // Reads events until one satisfies `match`; returns it, or nullopt at the deadline.
    std::optional<Json> wait_for(const std::function<bool(const Json&)>& match, std::chrono::milliseconds limit) {
        const auto deadline = Clock::now() + limit;
        while (true) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto e = next_event(left);
            if (!e) return std::nullopt;
            if (match(*e)) return e;
        }
    }

    // Like wait_for, but an event already read (and skipped by an earlier wait) counts too.
    std::optional<Json> seen_or_wait_for(const std::function<bool(const Json&)>& match,
                                         std::chrono::milliseconds limit) {
        for (const Json& e : events_) {
            if (match(e)) return e;
        }
        return wait_for(match, limit);
    }

    std::optional<Json> wait_for_event(const std::string& kind, std::chrono::milliseconds limit) {
        return wait_for([&](const Json& j) { return j.value("event", "") == kind; }, limit);
    }

    // Reads until a line (JSON or not) containing `text` arrives; false at the deadline.
    bool wait_for_line(const std::string& text, std::chrono::milliseconds limit) {
        const auto deadline = Clock::now() + limit;
        for (const std::string& line : lines_) {
            if (line.find(text) != std::string::npos) return true;
        }
        while (true) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            auto line = next_line(left);
            if (!line) return false;
            if (line->find(text) != std::string::npos) return true;
        }
    }

    // Every event read so far (including those wait_for skipped).
    const std::vector<Json>& events() const { return events_; }

    // Waits for exit (a pidfd becomes readable when the child exits); returns
    // the exit status, or -1 at the deadline.
    int wait_exit(std::chrono::milliseconds limit) {
        const auto deadline = Clock::now() + limit;
        const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
        int result = -1;
        while (true) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                exited_ = true;
                result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0 || pidfd < 0) break;
            // Keep draining stdout so the child never blocks writing while we wait.
            pollfd p[2] = {{pidfd, POLLIN, 0}, {stdout_eof_ ? -1 : stdout_, POLLIN, 0}};
            if (::poll(p, 2, static_cast<int>(left.count())) <= 0) continue;
            if (p[1].revents & (POLLIN | POLLHUP)) {
                char buf[65536];
                const ssize_t n = ::read(stdout_, buf, sizeof(buf));
                if (n > 0) buffer_.append(buf, static_cast<std::size_t>(n));
                if (n <= 0) stdout_eof_ = true;
            }
        }
        if (pidfd >= 0) ::close(pidfd);
        return result;
    }

private:
    pid_t pid_ = -1;
    int stdout_ = -1;
    int stdin_ = -1;
    bool exited_ = false;
    bool stdout_eof_ = false;
    std::string buffer_;
    std::vector<Json> events_;
    std::vector<std::string> lines_;  // Every line read, JSON or not.
};

}  // namespace lifeline::testing
