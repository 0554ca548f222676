// The embedded presence's vocabulary: who is online on this server, since
// when, and why those who left went offline (lifeline serve's GET /presence,
// Server::presence()). The records are kept, and their rules applied, by
// SessionDirectory (lifeline/engine/session_directory.hpp): fenced by epoch,
// so that an offline from an older admission (a replaced session ending
// late) changes nothing, whatever order the two arrive in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lifeline/disconnect_reason.hpp"

namespace lifeline {

struct PresenceRecord {
    std::string id;
    bool online = false;
    std::uint64_t epoch = 0;  // 1 at the id's first admission, +1 at every later one.
    std::uint64_t conn = 0;   // The connection of that epoch.
    std::string peer;
    std::int64_t since_ms = 0;                    // Online: admitted at; offline: went offline at (Unix ms).
    std::optional<DisconnectReason> last_reason;  // Why it last went offline, if it ever did.
};

// What a session's end did to its id's presence (SessionDirectory::offline()).
struct PresenceOffline {
    bool applied = false;     // False: a newer epoch holds the id (the record is unchanged).
    std::uint64_t epoch = 0;  // The ended session's epoch (0: never online here).
};

}  // namespace lifeline
