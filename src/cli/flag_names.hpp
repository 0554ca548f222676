// Library errors name the fields of ServerOptions and ClientOptions
// ("min_interval must be > 0"); people type flags. This turns one into the
// other for the messages the CLI prints ("--min-interval must be > 0").
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace lifeline::cli {

struct FlagName {
    std::string_view field;  // As the library names it: "min_interval".
    std::string_view flag;   // As the command takes it: "--min-interval".
};

// `lifeline serve`'s fields, `lifeline connect`'s, and the keepalive pair both share.
extern const std::span<const FlagName> kServeFlags;
extern const std::span<const FlagName> kConnectFlags;
extern const std::span<const FlagName> kKeepaliveFlags;

// Every whole word of `message` that is a field in `names` becomes its flag.
std::string with_flag_names(std::string_view message, std::span<const FlagName> names);

}  // namespace lifeline::cli
