#include "lifeline/result.hpp"

#include <cstring>

namespace lifeline {

Error system_error(const std::string& what, int errnum) { return Error{what + ": " + std::strerror(errnum), errnum}; }

}  // namespace lifeline
