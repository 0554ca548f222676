#include "lifeline/time.hpp"

#include <cmath>
#include <cstdlib>

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

std::string to_human(Duration d) {
    if (d.is_infinite()) return "never";
    if (d < Duration::seconds(60)) return to_string(d);
    std::int64_t ms = d.ms();
    std::string out;
    if (const std::int64_t h = ms / 3'600'000; h > 0) out += std::to_string(h) + "h";
    ms %= 3'600'000;
    if (const std::int64_t m = ms / 60'000; m > 0) out += std::to_string(m) + "m";
    ms %= 60'000;
    if (ms > 0) out += to_string(Duration::milliseconds(ms));
    return out;
}

Result<Duration> parse_duration(std::string_view text) {
    auto bad = [&](const char* why) {
        return Error{"invalid duration '" + std::string(text) + "': " + why +
                     " (expected a number and a unit: ns, us, ms, s, m or h, e.g. 250ms, 1.5s, 2h)"};
    };
    if (text == "0") return Duration::zero();
    std::size_t digits = 0;
    while (digits < text.size() && ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.')) ++digits;
    if (digits == 0) return bad("no number");
    const std::string number(text.substr(0, digits));
    const std::string_view unit = text.substr(digits);
    if (number.find('.') != number.rfind('.')) return bad("more than one decimal point");
    char* end = nullptr;
    const double value = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size() || !std::isfinite(value)) return bad("not a number");
    double unit_ns = 0;
    if (unit == "ns")
        unit_ns = 1;
    else if (unit == "us")
        unit_ns = 1e3;
    else if (unit == "ms")
        unit_ns = 1e6;
    else if (unit == "s")
        unit_ns = 1e9;
    else if (unit == "m")
        unit_ns = 60e9;
    else if (unit == "h")
        unit_ns = 3600e9;
    else
        return bad(unit.empty() ? "missing unit" : "unknown unit");
    const double ns = std::round(value * unit_ns);
    if (ns > 9.2e18) return bad("too large");
    return Duration::nanoseconds(static_cast<std::int64_t>(ns));
}

}  // namespace lifeline
