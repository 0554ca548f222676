// Internal: the processes the lab runs. Short commands (`ip`, `nft`) run to
// completion with their output captured; long-lived `lifeline serve/connect`
// children run inside a network namespace with their JSON-lines stdout read
// through a non-blocking pipe by the lab's poll loop.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "lifeline/result.hpp"

namespace lifeline::lab {

// Runs argv[0] (searched in PATH) to completion, inside network namespace
// `netns` when it is not empty; the error carries the command line, its exit
// status and what it printed. No shell is involved. The child has its own
// process group, so a Ctrl-C meant for the lab cannot kill it half-way (the
// lab's teardown itself runs such commands).
Result<std::string> run_command(const std::vector<std::string>& argv, const std::string& netns = "");

// "ip netns exec"-like, without a process in between: the child enters
// /run/netns/<netns> and execs `argv`. It dies with the lab (PR_SET_PDEATHSIG),
// has its own process group, the default signal mask, stdout on a pipe and
// stderr appended to `stderr_path` (for post-mortems). Its stdin is
// /dev/null, or with `with_stdin` a stream the lab writes to (write_stdin).
class LabProcess {
public:
    static Result<LabProcess> spawn(const std::string& netns, const std::vector<std::string>& argv,
                                    const std::string& stderr_path, bool with_stdin = false);
    LabProcess(LabProcess&& other) noexcept;
    LabProcess& operator=(LabProcess&& other) noexcept;
    LabProcess(const LabProcess&) = delete;
    LabProcess& operator=(const LabProcess&) = delete;
    ~LabProcess();  // SIGKILLs and reaps a child still running.

    pid_t pid() const { return pid_; }
    int stdout_fd() const { return stdout_; }
    void signal(int sig) const;
    // Hands `text` to the child's stdin (spawned with_stdin), without blocking;
    // false when the child is gone or its stdin is full. Never raises SIGPIPE.
    bool write_stdin(const std::string& text) const;

    // Reads what is available (non-blocking) and returns the complete lines.
    // Returns an empty vector at EAGAIN; sets eof() at end of output.
    std::vector<std::string> read_lines();
    bool eof() const { return eof_; }

    // SIGCONT + SIGKILL and reap (idempotent).
    void kill_and_reap();

private:
    LabProcess() = default;
    pid_t pid_ = -1;
    int stdout_ = -1;
    int stdin_ = -1;  // Our end of the child's stdin (a socket, so a write cannot raise SIGPIPE).
    bool eof_ = false;
    std::string partial_;
};

}  // namespace lifeline::lab
