#include "lifeline/check.hpp"

#include <cstdio>
#include <cstdlib>

namespace lifeline {

void invariant_failed(const char* what, const char* expression, const char* file, int line) {
    std::fprintf(stderr, "lifeline: invariant failed: %s (%s) at %s:%d\n", what, expression, file, line);
    std::fflush(stderr);
    std::abort();
}

}  // namespace lifeline
