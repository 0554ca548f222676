#include "lab/process.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace lifeline::lab {

namespace {

std::string join(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
    return s;
}

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    return args;
}

// In the child, between fork and exec: only async-signal-safe calls.
void reset_signals_in_child() {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

// In the child, after its dup2()s: nothing else of the lab's leaks into it
// (libpcap's packet socket is not close-on-exec, and would keep the switch
// namespace alive and capturing for as long as the child lives).
void close_inherited_descriptors() { ::syscall(SYS_close_range, 3U, ~0U, 0U); }

// In the child: says why it could not start, on its stderr, then exits.
[[noreturn]] void child_failed(const char* what, int code) {
    const int err = errno;
    const char* text = ::strerror(err);  // Not async-signal-safe in theory; the child exits right after.
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, what, std::strlen(what));
    n = ::write(STDERR_FILENO, ": ", 2);
    n = ::write(STDERR_FILENO, text, std::strlen(text));
    n = ::write(STDERR_FILENO, "\n", 1);
    ::_exit(code);
}

}  // namespace

Result<std::string> run_command(const std::vector<std::string>& argv, const std::string& netns) {
    int ns = -1;
    if (!netns.empty()) {
        ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0) return system_error("open network namespace " + netns, errno);
    }
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        const int err = errno;
        if (ns >= 0) ::close(ns);
        return system_error("pipe", err);
    }
    std::vector<char*> args = c_argv(argv);
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int err = errno;
        ::close(out[0]);
        ::close(out[1]);
        if (ns >= 0) ::close(ns);
        return system_error("fork for `" + join(argv) + "`", err);
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        reset_signals_in_child();
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(out[1], STDERR_FILENO);
        if (ns >= 0 && ::setns(ns, CLONE_NEWNET) != 0) child_failed("setns", 125);
        close_inherited_descriptors();
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    if (ns >= 0) ::close(ns);
    ::close(out[1]);
    std::string output;
    char buf[4096];
    while (true) {
        const ssize_t n = ::read(out[0], buf, sizeof(buf));
        if (n > 0) {
            output.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    ::close(out[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return output;
    while (!output.empty() && output.back() == '\n') output.pop_back();
    const std::string how =
        WIFEXITED(status) && WEXITSTATUS(status) == 127
            ? "could not be run (is it installed?)"
            : "failed (status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")";
    return Error{"`" + join(argv) + "` " + how + (output.empty() ? "" : ": " + output)};
}

Result<LabProcess> LabProcess::spawn(const std::string& netns, const std::vector<std::string>& argv,
                                     const std::string& stderr_path, bool with_stdin) {
    int in[2] = {-1, -1};
    if (with_stdin && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0)
        return system_error("socketpair", errno);
    const auto close_stdin = [&] {
        for (int fd : in) {
            if (fd >= 0) ::close(fd);
        }
    };
    const int ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
        const int e = errno;
        close_stdin();
        return system_error("open network namespace " + netns, e);
    }
    const int err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err_fd < 0) {
        const int e = errno;
        ::close(ns);
        close_stdin();
        return system_error("open " + stderr_path, e);
    }
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        const int e = errno;
        ::close(ns);
        ::close(err_fd);
        close_stdin();
        return system_error("pipe", e);
    }
    const pid_t parent = ::getpid();
    std::vector<char*> args = c_argv(argv);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        reset_signals_in_child();
        // A lab that crashes must not leave its servers and clients running.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(126);
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err_fd, STDERR_FILENO);
        if (in[1] >= 0) {
            ::dup2(in[1], STDIN_FILENO);
        } else if (const int null = ::open("/dev/null", O_RDONLY); null >= 0) {
            ::dup2(null, STDIN_FILENO);
        }
        if (::setns(ns, CLONE_NEWNET) != 0) child_failed("lab: entering the network namespace", 125);
        close_inherited_descriptors();
        ::execv(args[0], args.data());
        child_failed("lab: exec", 127);
    }
    const int fork_errno = errno;
    ::close(ns);
    ::close(err_fd);
    ::close(out[1]);
    if (in[1] >= 0) ::close(in[1]);
    if (pid < 0) {
        ::close(out[0]);
        if (in[0] >= 0) ::close(in[0]);
        return system_error("fork", fork_errno);
    }
    // Cannot fail for a pipe just made (EBADF only); the reader polls first anyway.
    [[maybe_unused]] const int nonblocking = ::fcntl(out[0], F_SETFL, ::fcntl(out[0], F_GETFL) | O_NONBLOCK);
    LabProcess p;
    p.pid_ = pid;
    p.stdout_ = out[0];
    p.stdin_ = in[0];
    return p;
}

LabProcess::LabProcess(LabProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      stdout_(std::exchange(other.stdout_, -1)),
      stdin_(std::exchange(other.stdin_, -1)),
      eof_(other.eof_),
      partial_(std::move(other.partial_)) {}

LabProcess& LabProcess::operator=(LabProcess&& other) noexcept {
    if (this != &other) {
        kill_and_reap();
        if (stdout_ >= 0) ::close(stdout_);
        if (stdin_ >= 0) ::close(stdin_);
        pid_ = std::exchange(other.pid_, -1);
        stdout_ = std::exchange(other.stdout_, -1);
        stdin_ = std::exchange(other.stdin_, -1);
        eof_ = other.eof_;
        partial_ = std::move(other.partial_);
    }
    return *this;
}

LabProcess::~LabProcess() {
    kill_and_reap();
    if (stdout_ >= 0) ::close(stdout_);
    if (stdin_ >= 0) ::close(stdin_);
}

void LabProcess::signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
}

bool LabProcess::write_stdin(const std::string& text) const {
    if (stdin_ < 0) return false;
    const ssize_t n = ::send(stdin_, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == static_cast<ssize_t>(text.size());
}

void LabProcess::kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
}

std::vector<std::string> LabProcess::read_lines() {
    std::vector<std::string> lines;
    if (stdout_ < 0 || eof_) return lines;
    char buf[16384];
    while (true) {
        const ssize_t n = ::read(stdout_, buf, sizeof(buf));
        if (n > 0) {
            partial_.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) eof_ = true;
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    std::size_t start = 0;
    for (std::size_t nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n', start)) {
        lines.push_back(partial_.substr(start, nl - start));
        start = nl + 1;
    }
    partial_.erase(0, start);
    return lines;
}

}  // namespace lifeline::lab
