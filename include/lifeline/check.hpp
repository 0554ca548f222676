// Invariants that protect memory (indices, lengths, list links, state
// transitions) are checked in every build, release included: a failed check
// prints the invariant, what it guards and where, then aborts. A wrong index
// that corrupts a neighbour's connection is worse than a crash with a name.
// assert() stays for checks that only a debug build can afford.
#pragma once

namespace lifeline {

// Prints "lifeline: invariant failed: <what> (<expression>) at <file>:<line>" to stderr and aborts.
[[noreturn]] void invariant_failed(const char* what, const char* expression, const char* file, int line);

}  // namespace lifeline

#define LIFELINE_CHECK(condition, what)                                           \
    do {                                                                          \
        if (!(condition)) [[unlikely]]                                            \
            ::lifeline::invariant_failed((what), #condition, __FILE__, __LINE__); \
    } while (0)
