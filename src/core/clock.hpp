// One clock interface, two implementations: the OS's monotonic clock lives in
// the runtime (src/runtime/monotonic_clock.hpp); ManualClock here is the one
// tests and the simulator advance by hand. The core itself never asks a clock:
// callers read one and pass `now` in.
#pragma once

#include "lifeline/time.hpp"

namespace lifeline {

class Clock {
public:
    virtual ~Clock() = default;
    virtual Instant now() const = 0;
};

// A clock that moves only when told to. Starts at `start` (default: 0 ns).
class ManualClock final : public Clock {
public:
    explicit ManualClock(Instant start = Instant::from_ns(0)) : now_(start) {}

    Instant now() const override { return now_; }
    void advance(Duration d) { now_ += d; }
    // Moves to `t`; the clock is monotonic, so `t` must not be in the past.
    void advance_to(Instant t);

private:
    Instant now_;
};

}  // namespace lifeline
