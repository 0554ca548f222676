#include "lifeline/time.hpp"

namespace lifeline {

std::string to_string(Duration d) {
    if (d.is_infinite()) return "inf";
    const std::int64_t ns = d.ns();
    auto fmt = [](std::int64_t value, std::int64_t unit, const char* suffix) {
        std::string out = std::to_string(value / unit);
        std::int64_t frac = (value % unit) * 1000 / unit;
        if (frac < 0) frac = -frac;
        if (frac != 0) {
            std::string f = std::to_string(frac);
            f.insert(0, 3 - f.size(), '0');
            while (!f.empty() && f.back() == '0') f.pop_back();
            out += "." + f;
        }
        return out + suffix;
    };
    const std::int64_t mag = ns < 0 ? -ns : ns;
    if (mag >= 3'600'000'000'000 && ns % 3'600'000'000'000 == 0) return fmt(ns, 3'600'000'000'000, "h");
    if (mag >= 60'000'000'000 && ns % 60'000'000'000 == 0) return fmt(ns, 60'000'000'000, "m");
    if (mag >= 1'000'000'000) return fmt(ns, 1'000'000'000, "s");
    if (mag >= 1'000'000) return fmt(ns, 1'000'000, "ms");
    if (mag >= 1'000) return fmt(ns, 1'000, "us");
    return std::to_string(ns) + "ns";
}

}  // namespace lifeline
