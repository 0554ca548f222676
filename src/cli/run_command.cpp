// `lifeline run [POLICY] -- CMD [ARGS...]`: runs CMD with liblifeline_preload.so
// (src/preload), which gives every TCP socket CMD connects, accepts or
// listens on the policy. This file finds the library, passes the policy in
// the LIFELINE_* variables the library reads, and execs CMD.
#include <elf.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/policy_options.hpp"

namespace lifeline::cli {

namespace {

struct RunOptions {
    PolicyOptions policy;
    bool override_program = false;
    std::string log;
    std::vector<std::string> command;
};

std::string directory_of(const std::string& path) {
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

// The library's absolute path: LIFELINE_PRELOAD_LIBRARY if set, else next to
// this binary as installed (BINDIR/../LIBDIR) or as built (src/cli/../preload).
Result<std::string> find_preload_library() {
    if (const char* given = std::getenv("LIFELINE_PRELOAD_LIBRARY"); given != nullptr && *given != '\0')
        return std::string(given);
    char self[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return system_error("readlink(/proc/self/exe)", errno);
    const std::string bindir = directory_of(std::string(self, static_cast<std::size_t>(n)));
    const std::string installed = std::string(LIFELINE_PRELOAD_FROM_BINDIR);
    std::vector<std::string> candidates;
    candidates.push_back(installed.starts_with("/") ? installed : bindir + "/" + installed);
    candidates.push_back(bindir + "/" + LIFELINE_PRELOAD_FROM_BUILD_DIR);
    for (const std::string& candidate : candidates) {
        char resolved[PATH_MAX];
        if (::realpath(candidate.c_str(), resolved) != nullptr && ::access(resolved, R_OK) == 0)
            return std::string(resolved);
    }
    return Error{"liblifeline_preload.so not found (looked for " + candidates[0] + " and " + candidates[1] +
                 "); set LIFELINE_PRELOAD_LIBRARY to its path"};
}

// CMD as execvp would find it, or nullopt.
std::optional<std::string> program_path(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        const std::size_t end = std::min(dirs.find(':', start), dirs.size());
        const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
        const std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return std::nullopt;
}

// A 64-bit ELF executable without a PT_INTERP header: no dynamic loader, so
// LD_PRELOAD does nothing. False for scripts and anything unreadable.
bool statically_linked(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    Elf64_Ehdr header{};
    bool is_static = false;
    if (::pread(fd, &header, sizeof(header), 0) == static_cast<ssize_t>(sizeof(header)) &&
        std::memcmp(header.e_ident, ELFMAG, SELFMAG) == 0 && header.e_ident[EI_CLASS] == ELFCLASS64) {
        is_static = true;
        for (int i = 0; i < header.e_phnum; ++i) {
            Elf64_Phdr ph{};
            const off_t at = static_cast<off_t>(header.e_phoff + static_cast<std::uint64_t>(i) * header.e_phentsize);
            if (::pread(fd, &ph, sizeof(ph), at) != static_cast<ssize_t>(sizeof(ph))) break;
            if (ph.p_type == PT_INTERP) is_static = false;
        }
    }
    ::close(fd);
    return is_static;
}

std::string keepalive_spec(const KeepalivePolicy& p) {
    if (!p.enabled) return "off";
    return to_string(p.idle) + ":" + to_string(p.interval) + ":" + std::to_string(p.count);
}

// The variables src/preload/preload_config.hpp reads; the resolved policy
// only, so what the library applies is what was printed here.
Result<void> set_environment(const RunOptions& o, const KeepalivePolicy& policy, const std::string& library) {
    if (library.find_first_of(" :") != std::string::npos)
        return Error{"the preload library's path " + library +
                     " contains a space or colon, which LD_PRELOAD cannot hold"};
    ::unsetenv("LIFELINE_DETECT_WITHIN");
    ::setenv("LIFELINE_KEEPALIVE", keepalive_spec(policy).c_str(), 1);
    ::setenv("LIFELINE_USER_TIMEOUT", policy.user_timeout.to_string().c_str(), 1);
    if (o.override_program)
        ::setenv("LIFELINE_OVERRIDE", "1", 1);
    else
        ::unsetenv("LIFELINE_OVERRIDE");
    if (!o.log.empty()) {
        // Absolute, so a program that changes directory still finds it.
        std::string log = o.log;
        if (!log.starts_with("/")) {
            char cwd[PATH_MAX];
            if (::getcwd(cwd, sizeof(cwd)) != nullptr) log = std::string(cwd) + "/" + log;
        }
        ::setenv("LIFELINE_LOG", log.c_str(), 1);
    }
    const char* existing = std::getenv("LD_PRELOAD");
    const std::string preload = existing != nullptr && *existing != '\0' ? library + ":" + existing : library;
    ::setenv("LD_PRELOAD", preload.c_str(), 1);
    return {};
}

int run_run(const RunOptions& o, const CLI::App& sub) {
    std::vector<std::string> explanation;
    Result<KeepalivePolicy> policy = resolve_policy(o.policy, sub, explanation);
    if (policy) {
        if (auto valid = policy->validate(); !valid) policy = valid.error();
    }
    if (!policy) {
        fmt::print(stderr, "lifeline run: {}\n", policy.error().message);
        return 2;
    }
    Result<std::string> library = find_preload_library();
    if (!library) {
        fmt::print(stderr, "lifeline run: {}\n", library.error().message);
        return 127;
    }
    if (auto set = set_environment(o, *policy, *library); !set) {
        fmt::print(stderr, "lifeline run: {}\n", set.error().message);
        return 127;
    }
    const std::optional<std::string> path = program_path(o.command[0]);
    if (path && statically_linked(*path))
        fmt::print(stderr,
                   "lifeline run: warning: {} is statically linked: the preload library cannot reach it; "
                   "use `lifeline protect --pid` once it runs\n",
                   *path);
    fmt::print(stderr, "lifeline run: keepalive {} for every TCP socket of {}{}\n", policy->to_string(), o.command[0],
               o.override_program ? ", over the program's own timings" : "");
    for (const std::string& line : explanation) fmt::print(stderr, "  {}\n", line);
    std::vector<char*> argv;
    for (const std::string& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    fmt::print(stderr, "lifeline run: cannot run {}: {}\n", o.command[0], std::strerror(err));
    return err == ENOENT ? 127 : 126;
}

}  // namespace

void add_run_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<RunOptions>();
    CLI::App* sub =
        app.add_subcommand("run",
                           "Run CMD with a keepalive policy on every TCP socket it creates, without changing it:\n"
                           "liblifeline_preload.so (LD_PRELOAD) applies the policy at connect(), accept()/accept4()\n"
                           "and listen() (accepted connections inherit it), IPv4 and IPv6; other sockets are left\n"
                           "alone. A program that sets TCP_KEEPIDLE/KEEPINTVL/KEEPCNT or TCP_USER_TIMEOUT itself\n"
                           "keeps its values unless --override; one that only turns SO_KEEPALIVE on gets the policy;\n"
                           "one that turns it off is respected (and logged). The library reads LIFELINE_KEEPALIVE,\n"
                           "LIFELINE_DETECT_WITHIN, LIFELINE_USER_TIMEOUT, LIFELINE_OVERRIDE and LIFELINE_LOG, so\n"
                           "LD_PRELOAD=.../liblifeline_preload.so LIFELINE_DETECT_WITHIN=10s CMD works without\n"
                           "lifeline (docs/TUNING.md). Not covered: statically linked programs (Go, musl, -static)\n"
                           "and set-user-ID programs, which ignore LD_PRELOAD: use `lifeline protect --pid PID`.");
    add_policy_options(*sub, opts->policy);
    sub->add_flag("--override", opts->override_program,
                  "The policy wins: re-applied over the program's own keepalive timings");
    sub->add_option("--log", opts->log, "Append one JSON line per TCP socket touched to FILE")->type_name("FILE");
    sub->add_option("command", opts->command, "CMD [ARGS...] (after --)")->required();
    sub->callback([opts, &run, sub] { run = [opts, sub] { return run_run(*opts, *sub); }; });
}

}  // namespace lifeline::cli
