#include "lifeline/result.hpp"

#include <cstring>

namespace lifeline {

Error system_error(const std::string& what, int errnum) {
    return Error{what + ": " + std::strerror(errnum), errnum, Errc::system};
}

std::string_view to_string(Errc code) {
    switch (code) {
        case Errc::invalid_argument:
            return "invalid argument";
        case Errc::system:
            return "system call failed";
        case Errc::refused_by_kernel:
            return "refused by the kernel";
        case Errc::not_open:
            return "not open";
        case Errc::too_large:
            return "too large";
        case Errc::unsupported:
            return "unsupported";
        case Errc::timed_out:
            return "timed out";
        case Errc::protocol:
            return "protocol violation";
    }
    return "unknown lifeline error";
}

std::error_code Error::error_code() const {
    if (sys_errno != 0) return {sys_errno, std::system_category()};
    return make_error_code(code);
}

namespace {

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "lifeline"; }
    std::string message(int value) const override { return std::string(to_string(static_cast<Errc>(value))); }
};

}  // namespace

const std::error_category& lifeline_category() {
    static const Category category;
    return category;
}

}  // namespace lifeline
