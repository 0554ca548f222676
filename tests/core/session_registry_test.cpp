// SessionRegistry: the takeover rule (docs/PROTOCOL.md, "Takeover and admission").
#include "lifeline/engine/session_registry.hpp"

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

TEST(SessionRegistry, AFreeIdMayBeTakenAHeldOneOnlyWithItsToken) {
    SessionRegistry<int> r;
    EXPECT_TRUE(r.check("dev", "").may_take_over());
    EXPECT_FALSE(r.take("dev", 1, token_of(7)));
    const IdClaim none = r.check("dev", "");
    EXPECT_TRUE(none.in_use);
    EXPECT_FALSE(none.may_take_over());
    ResumeToken wrong = token_of(7);
    wrong.back() = 8;  // Differs in the last byte only.
    EXPECT_FALSE(r.check("dev", text(wrong)).may_take_over());
    EXPECT_FALSE(r.check("dev", text(token_of(7)).substr(0, 15)).may_take_over());
    EXPECT_TRUE(r.check("dev", text(token_of(7))).may_take_over());
    // Taking it names the holder it replaces; the old token is spent.
    EXPECT_EQ(r.take("dev", 2, token_of(9)), 1);
    EXPECT_FALSE(r.check("dev", text(token_of(7))).token_valid);
    EXPECT_EQ(r.find("dev"), 2);
}

TEST(SessionRegistry, OnlyTheCurrentHolderReleasesTheId) {
    SessionRegistry<int> r;
    r.take("dev", 1, token_of(1));
    r.take("dev", 2, token_of(2));
    EXPECT_FALSE(r.release("dev", 1));  // The replaced one closing later frees nothing.
    EXPECT_EQ(r.find("dev"), 2);
    EXPECT_TRUE(r.release("dev", 2));
    EXPECT_FALSE(r.find("dev"));
    EXPECT_EQ(r.size(), 0u);
}

}  // namespace
}  // namespace lifeline
