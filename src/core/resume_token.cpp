#include "lifeline/engine/resume_token.hpp"

namespace lifeline {

bool resume_token_matches(std::string_view presented, const ResumeToken& held) {
    if (presented.size() != held.size()) return false;  // The size is no secret: every token has it.
    // Constant time: how far a guess matched must not show in how long it took.
    unsigned diff = 0;
    for (std::size_t i = 0; i < held.size(); ++i) diff |= static_cast<std::uint8_t>(presented[i]) ^ held[i];
    return diff == 0;
}

}  // namespace lifeline
