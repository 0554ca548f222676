#include "lifeline/result.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <system_error>

namespace lifeline {
namespace {

TEST(ErrorCodes, AreStableValuesInTheLifelineCategory) {
    // The numbers are API: code that stored or switched on them keeps working.
    EXPECT_EQ(static_cast<int>(Errc::invalid_argument), 1);
    EXPECT_EQ(static_cast<int>(Errc::system), 2);
    EXPECT_EQ(static_cast<int>(Errc::refused_by_kernel), 3);
    EXPECT_EQ(static_cast<int>(Errc::not_open), 4);
    EXPECT_EQ(static_cast<int>(Errc::too_large), 5);
    EXPECT_EQ(static_cast<int>(Errc::unsupported), 6);
    EXPECT_EQ(static_cast<int>(Errc::timed_out), 7);
    EXPECT_EQ(static_cast<int>(Errc::protocol), 8);
    const std::error_code ec = Errc::not_open;
    EXPECT_STREQ(ec.category().name(), "lifeline");
    EXPECT_EQ(ec.message(), "not open");
}

TEST(ErrorCodes, ASystemErrorCarriesItsErrnoAsAStdErrorCode) {
    const Error e = system_error("setsockopt(TCP_KEEPIDLE)", EINVAL);
    EXPECT_EQ(e.code, Errc::system);
    EXPECT_EQ(e.sys_errno, EINVAL);
    EXPECT_EQ(e.error_code(), std::errc::invalid_argument);
    EXPECT_NE(e.message.find("setsockopt(TCP_KEEPIDLE): "), std::string::npos);
    const Error wrapped = e.with_context("socket 7");
    EXPECT_EQ(wrapped.code, Errc::system);
    EXPECT_EQ(wrapped.sys_errno, EINVAL);
    EXPECT_EQ(wrapped.message.rfind("socket 7: ", 0), 0u);
}

TEST(ErrorCodes, WithoutAnErrnoTheCodeIsTheLifelineOne) {
    const Error e = make_error(Errc::too_large, "message of 70000 bytes is larger than the 65536-byte limit");
    EXPECT_EQ(e.error_code(), make_error_code(Errc::too_large));
    EXPECT_EQ(Error{"plain"}.code, Errc::invalid_argument);
}

}  // namespace
}  // namespace lifeline
