// The keepalive policy flags `lifeline serve` takes, for the commands that
// apply a policy to sockets they do not own (protect): --detect-within DUR, or
// --keepalive IDLE:INTVL:CNT with --user-timeout auto|off|DUR. Resolved as
// serve resolves them: the plan of --detect-within (policy_for_budget), an
// explicit --keepalive instead of the planned one, and --user-timeout on top.
// Internal to src/cli.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline::cli {

struct PolicyOptions {
    Duration detect_within;
    std::string keepalive = "10s:2s:3";
    std::string user_timeout = "auto";
};

void add_policy_options(CLI::App& sub, PolicyOptions& o);

// `explanation` gets one sentence per choice --detect-within made. Without
// heartbeats only the kernel detects, and it counts in whole seconds: targets
// under 2 s are an error rather than a promise it cannot keep.
Result<KeepalivePolicy> resolve_policy(const PolicyOptions& o, const CLI::App& sub,
                                       std::vector<std::string>& explanation);

}  // namespace lifeline::cli
