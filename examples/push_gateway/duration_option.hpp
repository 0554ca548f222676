// A CLI11 option that parses a lifeline duration ("500ms", "3s"), for the
// gateway and its client driver. The example's own: lifeline's CLI keeps its
// version in src/cli, which a program built on the library cannot include.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "lifeline/time.hpp"

namespace push_gateway {

inline CLI::Option* add_duration(CLI::App& app, const std::string& name, lifeline::Duration& target,
                                 const std::string& help) {
    return app
        .add_option_function<std::string>(
            name,
            [&target, name](const std::string& text) {
                lifeline::Result<lifeline::Duration> d = lifeline::parse_duration(text);
                if (!d) throw CLI::ValidationError(name, d.error().message);
                target = *d;
            },
            help)
        ->type_name("DURATION")
        ->default_str(lifeline::to_string(target));
}

}  // namespace push_gateway
