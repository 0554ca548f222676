// Test support: which connection I/O backend the end-to-end tests give
// `lifeline serve`. ctest runs those suites twice, the second time with
// LIFELINE_TEST_IO=uring (tests/runtime/CMakeLists.txt), so every behaviour
// they check holds for both backends.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

namespace lifeline::testing {

// {"--io", backend} when LIFELINE_TEST_IO is set, else nothing (the default, epoll).
inline std::vector<std::string> serve_io_flags() {
    const char* io = std::getenv("LIFELINE_TEST_IO");
    if (io == nullptr || *io == '\0') return {};
    return {"--io", io};
}

}  // namespace lifeline::testing
