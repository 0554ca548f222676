// lifeline: detect dead peers on long-lived TCP connections.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "cli/commands.hpp"

namespace lifeline::cli {

CLI::Option* add_duration_option(CLI::App& app, const std::string& name, Duration& target, const std::string& help) {
    auto* opt = app.add_option_function<std::string>(
        name,
        [&target, name](const std::string& text) {
            const Result<Duration> parsed = parse_duration(text);
            if (!parsed) throw CLI::ValidationError(name, parsed.error().message);
            target = *parsed;
        },
        help);
    opt->default_str(to_string(target))->type_name("DURATION");
    return opt;
}

std::vector<std::string> rebuild_arguments(const CLI::App& sub, const std::vector<std::string>& skip) {
    std::vector<std::string> args{sub.get_name()};
    for (const CLI::Option* opt : sub.get_options()) {
        if (opt->count() == 0 || opt->get_name() == "--help") continue;
        if (std::find(skip.begin(), skip.end(), opt->get_name()) != skip.end()) continue;
        for (const std::string& value : opt->results()) {
            if (opt->get_positional()) {
                args.push_back(value);
            } else if (opt->get_expected_min() == 0) {
                // A flag: CLI11 records "true"/"false" (or a count) per use.
                if (value != "false" && value != "0") args.push_back(opt->get_name());
            } else {
                // One "--name=value" word: a value starting with '-' stays a value.
                args.push_back(opt->get_name() + "=" + value);
            }
        }
    }
    return args;
}

}  // namespace lifeline::cli

int main(int argc, char** argv) {
    CLI::App app{
        "lifeline: detects dead peers on long-lived TCP connections, with application heartbeats\n"
        "and kernel TCP keepalive / TCP_USER_TIMEOUT.\n\n"
        "Durations are written with a unit: 250ms, 1.5s, 2m, 1h."};
    app.require_subcommand(1);
    app.set_version_flag("--version", "lifeline 0.1.0");
    lifeline::cli::Action run;
    lifeline::cli::add_sim_command(app, run);
    lifeline::cli::add_sysctl_command(app, run);
    lifeline::cli::add_inspect_command(app, run);
    lifeline::cli::add_serve_command(app, run);
    lifeline::cli::add_connect_command(app, run);
    lifeline::cli::add_lab_command(app, run);
    lifeline::cli::add_bench_command(app, run);
    lifeline::cli::add_protect_command(app, run);
    lifeline::cli::add_reap_command(app, run);
    lifeline::cli::add_run_command(app, run);
    lifeline::cli::add_presence_command(app, run);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return run ? run() : 0;
}
