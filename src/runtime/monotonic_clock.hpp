// The OS clock for the runtime.
#pragma once

#include "core/clock.hpp"

namespace lifeline {

// CLOCK_MONOTONIC: deadlines must not jump when an operator or NTP steps the
// wall clock. (CLOCK_BOOTTIME would also count suspended time; we want a
// suspend to look like a local stall, which the runtime detects and forgives,
// not like peers that were silent for hours.)
class MonotonicClock final : public Clock {
public:
    Instant now() const override;
};

}  // namespace lifeline
