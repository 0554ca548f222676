// Who holds each client id, and the resume token its WELCOME issued: the
// takeover rule of docs/PROTOCOL.md ("Takeover and admission"), once, for
// lifeline's Server, the simulator and users' own loops.
//
//   on HELLO with an id:   Claim c = registry.check(id, hello_token);
//                          refuse (CLOSE id_in_use) unless c.may_take_over()
//   on admit:              if (auto old = registry.take(id, me, new_token)) close *old with session_replaced
//   on close:              registry.release(id, me);
//
// `Holder` names a connection (copyable, ==). Tokens are made by the caller
// (16 bytes from a CSPRNG: this header reads no randomness) and compared in
// constant time. Threads: none; one thread at a time (lock it if shared).
// Errors: none; unknown ids are simply not held.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

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

template <class Holder>
class SessionRegistry {
public:
    IdClaim check(std::string_view id, std::string_view token) const {
        auto it = entries_.find(std::string(id));
        if (it == entries_.end()) return {};
        return {true, resume_token_matches(token, it->second.token)};
    }

    // `id` is now `holder`'s, with `token`. Returns the holder it replaced
    // (which must end with session_replaced), if any.
    std::optional<Holder> take(std::string_view id, const Holder& holder, const ResumeToken& token) {
        auto [it, inserted] = entries_.try_emplace(std::string(id), Entry{holder, token});
        if (inserted) return std::nullopt;
        std::optional<Holder> previous = it->second.holder;
        it->second = Entry{holder, token};
        return previous;
    }

    // `holder` closed: its id is free again, unless a newer holder took it.
    // True if it was released.
    bool release(std::string_view id, const Holder& holder) {
        auto it = entries_.find(std::string(id));
        if (it == entries_.end() || !(it->second.holder == holder)) return false;
        entries_.erase(it);
        return true;
    }

    std::optional<Holder> find(std::string_view id) const {
        auto it = entries_.find(std::string(id));
        if (it == entries_.end()) return std::nullopt;
        return it->second.holder;
    }
    std::size_t size() const { return entries_.size(); }

private:
    struct Entry {
        Holder holder;
        ResumeToken token;
    };
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace lifeline
