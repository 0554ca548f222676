#include "cli/self_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

namespace lifeline::cli {

Result<SelfProcess> spawn_self(const std::vector<std::string>& args, int death_signal) {
    // Exec'ed as /proc/self/exe: the very binary running now, even if the
    // file on disk was replaced or removed since (a rebuild, an upgrade).
    std::vector<std::string> full = args;
    full.insert(full.begin(), "/proc/self/exe");
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return system_error("pipe", errno);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::prctl(PR_SET_PDEATHSIG, death_signal);
        if (::getppid() != parent) ::_exit(1);  // The parent died before prctl took hold.
        ::dup2(pipefd[1], STDOUT_FILENO);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    const int fork_errno = errno;
    ::close(pipefd[1]);
    if (pid < 0) {
        ::close(pipefd[0]);
        return system_error("fork", fork_errno);
    }
    return SelfProcess{pid, pipefd[0]};
}

}  // namespace lifeline::cli
