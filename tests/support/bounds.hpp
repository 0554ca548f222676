// How late the correctness suite lets a thing happen. It checks behaviour,
// not speed on a shared machine (two cores, ASan, a neighbour test running):
// a deadline is the promise plus kSchedulingSlack, which only real
// starvation, a loop that does not run for a second, crosses. The tight
// figures are measured by benchmarks (docs/BENCHMARKS.md, "Starvation and
// detection latency") and the tests that assert a wall-clock bound carry the
// ctest label `timing` (ctest -L timing lists them).
#pragma once

#include <chrono>

namespace lifeline::testing {

inline constexpr std::chrono::milliseconds kSchedulingSlack{1000};
inline constexpr double kSchedulingSlackMs = 1000.0;

}  // namespace lifeline::testing
