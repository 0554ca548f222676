#include "runtime/monotonic_clock.hpp"

#include <time.h>

namespace lifeline {

Instant MonotonicClock::now() const {
    timespec ts{};
    // clock_gettime(CLOCK_MONOTONIC) cannot fail with a valid pointer and clock id.
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return Instant::from_ns(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
}

}  // namespace lifeline
