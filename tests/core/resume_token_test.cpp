// The takeover rule's vocabulary: resume tokens compared in constant time, and
// what a claim on an id amounts to. SessionDirectory applies the rule
// (tests/core/session_directory_test.cpp).
#include "lifeline/engine/resume_token.hpp"

#include <gtest/gtest.h>

#include <string>

namespace lifeline {
namespace {

ResumeToken token_of(std::uint8_t fill) {
    ResumeToken t{};
    t.fill(fill);
    return t;
}

std::string text(const ResumeToken& t) { return std::string(reinterpret_cast<const char*>(t.data()), t.size()); }

TEST(ResumeToken, OnlyTheSameSixteenBytesMatch) {
    const ResumeToken held = token_of(7);
    EXPECT_TRUE(resume_token_matches(text(held), held));
    // Wherever a guess differs, first byte or last, it fails alike.
    ResumeToken first = held;
    first.front() = 8;
    ResumeToken last = held;
    last.back() = 8;
    EXPECT_FALSE(resume_token_matches(text(first), held));
    EXPECT_FALSE(resume_token_matches(text(last), held));
    // A prefix, a longer text or nothing at all is no token.
    EXPECT_FALSE(resume_token_matches(text(held).substr(0, 15), held));
    EXPECT_FALSE(resume_token_matches(text(held) + '\x07', held));
    EXPECT_FALSE(resume_token_matches("", held));
}

TEST(ResumeToken, AFreeIdMayBeTakenAHeldOneOnlyWithItsToken) {
    EXPECT_TRUE(IdClaim{}.may_take_over());
    EXPECT_TRUE((IdClaim{false, false}).may_take_over());
    EXPECT_FALSE((IdClaim{true, false}).may_take_over());
    EXPECT_TRUE((IdClaim{true, true}).may_take_over());
}

}  // namespace
}  // namespace lifeline
