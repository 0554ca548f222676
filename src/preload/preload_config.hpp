// The policy liblifeline_preload applies, read from the environment once, at
// the first wrapped call. The variables (docs/TUNING.md, "lifeline run"):
//   LIFELINE_KEEPALIVE=IDLE:INTVL:CNT|off   explicit kernel keepalive
//   LIFELINE_DETECT_WITHIN=DUR              or: derived from a target (>= 2s)
//   LIFELINE_USER_TIMEOUT=auto|off|DUR      TCP_USER_TIMEOUT (default auto)
//   LIFELINE_OVERRIDE=1                     the policy wins over the program's own timings
//   LIFELINE_LOG=FILE                       one JSON line per socket touched
// As with `lifeline run`'s flags: an explicit keepalive wins over the
// detection target; with neither, 10s:2s:3. Internal to src/preload.
#pragma once

#include <functional>
#include <string>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"

namespace lifeline::preload {

struct PreloadConfig {
    KeepalivePolicy policy;
    bool override_program = false;  // LIFELINE_OVERRIDE
    std::string log_path;           // LIFELINE_LOG; empty: no log
    std::string source;             // Which variables chose the policy, for the log.
};

// `lookup` returns a variable's value or null (getenv in the library; a map in tests).
using EnvLookup = std::function<const char*(const char*)>;

// Errors name the variable and why; then nothing is applied.
Result<PreloadConfig> config_from_env(const EnvLookup& lookup);

}  // namespace lifeline::preload
