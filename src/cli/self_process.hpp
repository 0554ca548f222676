// Re-running this `lifeline` binary as a child (bench shards, serve workers).
// Internal to src/cli.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "lifeline/result.hpp"

namespace lifeline::cli {

struct SelfProcess {
    pid_t pid = -1;
    int stdout_fd = -1;  // Read end of the child's stdout (close-on-exec).
};

// Forks and execs /proc/self/exe with `args` (args[0] is the subcommand). The
// child gets the default signal mask, and `death_signal` when this process
// dies, however it dies, so no child outlives its parent.
Result<SelfProcess> spawn_self(const std::vector<std::string>& args, int death_signal);

}  // namespace lifeline::cli
