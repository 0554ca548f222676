// Subcommands of the `lifeline` command (internal to src/cli). Each file
// registers one subcommand; when it is chosen, it sets `run` to the action.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "lifeline/time.hpp"

namespace lifeline::cli {

using Action = std::function<int()>;

void add_sim_command(CLI::App& app, Action& run);
void add_sysctl_command(CLI::App& app, Action& run);
void add_inspect_command(CLI::App& app, Action& run);
void add_serve_command(CLI::App& app, Action& run);
void add_connect_command(CLI::App& app, Action& run);
void add_lab_command(CLI::App& app, Action& run);
void add_bench_command(CLI::App& app, Action& run);
void add_protect_command(CLI::App& app, Action& run);
void add_reap_command(CLI::App& app, Action& run);
void add_run_command(CLI::App& app, Action& run);
void add_presence_command(CLI::App& app, Action& run);

// The command line that would give `sub` the options it was given, starting
// with its name, leaving out the options named in `skip` (e.g. "--workers"):
// for re-running ourselves as worker or shard processes.
std::vector<std::string> rebuild_arguments(const CLI::App& sub, const std::vector<std::string>& skip);

// Adds a duration option ("250ms", "1.5s", "2h") that fails parsing with a clear message.
CLI::Option* add_duration_option(CLI::App& app, const std::string& name, Duration& target, const std::string& help);

}  // namespace lifeline::cli
