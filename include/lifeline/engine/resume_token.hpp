// The takeover rule's vocabulary (docs/PROTOCOL.md, "Takeover and
// admission"): the resume token a WELCOME issues, and what a HELLO's claim
// on an id amounts to. SessionDirectory (lifeline/engine/session_directory.hpp)
// holds the ids and applies the rule, for lifeline's Server, the simulator
// and users' own loops.
//
//   on HELLO with an id:   IdClaim c = directory.check(id, hello_token);
//                          refuse (CLOSE id_in_use) unless c.may_take_over()
//
// Threads: any. Errors: none.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace lifeline {

inline constexpr std::size_t kResumeTokenSize = 16;
using ResumeToken = std::array<std::uint8_t, kResumeTokenSize>;

// `presented` equals `held`, in time that does not depend on where they differ.
bool resume_token_matches(std::string_view presented, const ResumeToken& held);

// What a HELLO's claim on an id amounts to.
struct IdClaim {
    bool in_use = false;       // An open connection holds the id.
    bool token_valid = false;  // The HELLO carried that holder's token.
    // The default rule: a free id may be taken, a held one only with its token.
    bool may_take_over() const { return !in_use || token_valid; }
};

}  // namespace lifeline
