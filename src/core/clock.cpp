#include "core/clock.hpp"

#include <cassert>

namespace lifeline {

void ManualClock::advance_to(Instant t) {
    assert(t >= now_ && "ManualClock is monotonic");
    now_ = t;
}

}  // namespace lifeline
