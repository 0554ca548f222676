// How the generator spreads heartbeats over time, and the ids its clients send.
#include <fmt/core.h>

#include "loadgen/load_engine.hpp"

namespace lifeline::loadgen {

namespace {

// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): a bijection of its state, so distinct seeds give
// distinct outputs, and a good enough spread for phases.
std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

}  // namespace

Duration start_jitter(Arrivals arrivals, Duration heartbeat, std::uint64_t& rng_state) {
    if (arrivals == Arrivals::burst || heartbeat <= Duration::zero()) return Duration::zero();
    const auto interval_ns = static_cast<std::uint64_t>(heartbeat.ns());
    // The modulo's bias is below interval / 2^64: nothing at any interval a Duration holds.
    return Duration::nanoseconds(static_cast<std::int64_t>(splitmix64(rng_state) % interval_ns));
}

std::string client_id_base(std::uint64_t seed) {
    std::uint64_t state = seed;
    return fmt::format("device-{:016x}", splitmix64(state));
}

}  // namespace lifeline::loadgen
