// `lifeline sysctl`: the kernel's keepalive settings, what they imply, advice
// for a detection target, and applying it.
#include <fmt/core.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.hpp"
#include "lifeline/sys/detection_budget.hpp"
#include "net/sysctl.hpp"

namespace lifeline::cli {

namespace {

using nlohmann::json;

struct SysctlOptions {
    bool json = false;
    Duration target;
    Duration nat_timeout;
    std::string keepalive;
    bool dry_run = false;
    std::string conf_path = "/etc/sysctl.d/90-lifeline.conf";
};

json ms(Duration d) { return d.is_infinite() ? json(nullptr) : json(d.ms_f()); }

int fail(const std::string& what) {
    fmt::print(stderr, "lifeline sysctl: {}\n", what);
    return 1;
}

struct WorstCases {
    Duration idle_with_keepalive;
    Duration data_in_flight;
    Duration connect;
};

WorstCases worst_cases(const TcpKernelSettings& s) {
    return {idle_peer_detection(s), retransmission_give_up(s.retries2), connect_give_up(s.syn_retries)};
}

int run_show(const SysctlOptions& o) {
    Result<TcpKernelSettings> read = net::read_tcp_kernel_settings();
    if (!read) return fail(read.error().message);
    const TcpKernelSettings& s = *read;
    const WorstCases w = worst_cases(s);
    if (o.json) {
        json out;
        out["sysctls"] = {
            {net::kSysctlKeepaliveTime, s.keepalive_time.ns() / 1'000'000'000},
            {net::kSysctlKeepaliveIntvl, s.keepalive_intvl.ns() / 1'000'000'000},
            {net::kSysctlKeepaliveProbes, s.keepalive_probes},
            {net::kSysctlRetries2, s.retries2},
            {net::kSysctlSynRetries, s.syn_retries},
        };
        out["worst_case_ms"] = {
            {"idle_with_keepalive", ms(w.idle_with_keepalive)},
            {"idle_without_keepalive", nullptr},
            {"data_in_flight", ms(w.data_in_flight)},
            {"connect", ms(w.connect)},
        };
        fmt::print("{}\n", out.dump(2));
        return 0;
    }
    fmt::print(
        "TCP sysctls of this network namespace. They apply to sockets that enable SO_KEEPALIVE\n"
        "without per-socket overrides (lifeline sets its own values per socket).\n\n");
    fmt::print("  {:<30} {:>6}  {}\n", net::kSysctlKeepaliveTime, s.keepalive_time.ns() / 1'000'000'000,
               to_human(s.keepalive_time));
    fmt::print("  {:<30} {:>6}  {}\n", net::kSysctlKeepaliveIntvl, s.keepalive_intvl.ns() / 1'000'000'000,
               to_human(s.keepalive_intvl));
    fmt::print("  {:<30} {:>6}\n", net::kSysctlKeepaliveProbes, s.keepalive_probes);
    fmt::print("  {:<30} {:>6}\n", net::kSysctlRetries2, s.retries2);
    fmt::print("  {:<30} {:>6}\n\n", net::kSysctlSynRetries, s.syn_retries);
    fmt::print("Worst case before the kernel notices that a peer is gone:\n");
    fmt::print("  {:<40} {:>10}  keepalive_time + keepalive_intvl x keepalive_probes\n",
               "idle connection with SO_KEEPALIVE", to_human(w.idle_with_keepalive));
    fmt::print("  {:<40} {:>10}  nothing is sent, so nothing can fail\n", "idle connection without SO_KEEPALIVE",
               "never");
    fmt::print("  {:<40} {:>10}  tcp_retries2 = {}; keepalive never probes while data is unacknowledged\n",
               "peer lost with data in flight", to_human(w.data_in_flight), s.retries2);
    fmt::print("  {:<40} {:>10}  tcp_syn_retries = {}\n\n", "connect() to a host that never answers",
               to_human(w.connect), s.syn_retries);
    fmt::print("`lifeline sysctl advise --target 10s` suggests values for a detection target.\n");
    return 0;
}

Result<KeepaliveAdvice> advice_for(const SysctlOptions& o) {
    std::optional<Duration> nat;
    if (o.nat_timeout > Duration::zero()) nat = o.nat_timeout;
    return advise_keepalive(o.target, nat);
}

std::string conf_comment(const SysctlOptions& o, const KeepalivePolicy& p) {
    std::string c = "Written by `lifeline sysctl apply`";
    if (o.target > Duration::zero()) c += " for a detection target of " + to_human(o.target);
    c += ".\nAn idle dead peer is noticed within " + to_human(p.budget()) +
         " on sockets that enable SO_KEEPALIVE.\nData in flight is not covered: set TCP_USER_TIMEOUT per socket.";
    return c;
}

int run_advise(const SysctlOptions& o) {
    Result<KeepaliveAdvice> advice = advice_for(o);
    if (!advice) return fail(advice.error().message);
    const KeepalivePolicy& p = advice->policy;
    const auto settings = net::keepalive_sysctls(p);
    if (o.json) {
        json out;
        out["target_ms"] = ms(o.target);
        out["keepalive"] = {{"idle_s", p.idle.ns() / 1'000'000'000},
                            {"interval_s", p.interval.ns() / 1'000'000'000},
                            {"count", p.count}};
        out["user_timeout_ms"] = ms(p.user_timeout_value());
        out["worst_case_ms"] = ms(advice->worst_case);
        out["probes_per_hour"] = advice->probes_per_hour;
        out["bytes_per_hour"] = advice->bytes_per_hour;
        out["tcp_retries2_within_target"] = advice->retries2_within_target;
        out["notes"] = advice->notes;
        for (const auto& s : settings) out["sysctls"][s.name] = s.value;
        fmt::print("{}\n", out.dump(2));
        return 0;
    }
    fmt::print("For a dead peer to be noticed within {}:\n\n", to_human(o.target));
    fmt::print("  keepalive idle {}, then a probe every {}, {} unanswered probes: worst case {}\n", to_human(p.idle),
               to_human(p.interval), p.count, to_human(advice->worst_case));
    fmt::print("  TCP_USER_TIMEOUT {} (per socket) for a peer lost with data in flight\n\n",
               to_human(p.user_timeout_value()));
    fmt::print("Trade-offs:\n");
    for (const auto& n : advice->notes) fmt::print("  - {}\n", n);
    fmt::print("\nPer socket (what lifeline applies): --keepalive {}:{}:{} --user-timeout auto\n", to_string(p.idle),
               to_string(p.interval), p.count);
    fmt::print("\nHost-wide, now (root):\n  sysctl -w");
    for (const auto& s : settings) fmt::print(" {}={}", s.name, s.value);
    fmt::print(
        "\n\nHost-wide, at every boot: /etc/sysctl.d/90-lifeline.conf (or `lifeline sysctl apply --target {}`)\n",
        to_string(o.target));
    fmt::print("{}", net::sysctl_conf_text(settings, conf_comment(o, p)));
    return 0;
}

int run_apply(const SysctlOptions& o) {
    KeepalivePolicy policy;
    if (!o.keepalive.empty()) {
        Result<KeepalivePolicy> parsed = KeepalivePolicy::parse(o.keepalive);
        if (!parsed) return fail(parsed.error().message);
        if (!parsed->enabled) return fail("--keepalive off has no sysctl form: keepalive is enabled per socket");
        policy = *parsed;
    } else {
        Result<KeepaliveAdvice> advice = advice_for(o);
        if (!advice) return fail(advice.error().message);
        policy = advice->policy;
    }
    const auto settings = net::keepalive_sysctls(policy);
    json changes = json::array();
    std::vector<std::pair<net::SysctlSetting, std::string>> plan;
    for (const auto& s : settings) {
        Result<std::string> now = net::read_sysctl(s.name);
        if (!now) return fail(now.error().message);
        plan.emplace_back(s, *now);
        changes.push_back({{"name", s.name}, {"from", *now}, {"to", s.value}, {"changes", *now != s.value}});
    }
    if (!o.dry_run && ::geteuid() != 0) {
        return fail("apply needs root: it writes /proc/sys/net/ipv4/* and " + o.conf_path +
                    ". Run it as root, or add --dry-run to see what would change.");
    }
    const std::string conf = net::sysctl_conf_text(settings, conf_comment(o, policy));
    if (!o.dry_run) {
        if (auto w = net::write_file_atomically(o.conf_path, conf); !w) return fail(w.error().message);
        for (const auto& [s, before] : plan) {
            if (auto w = net::write_sysctl(s); !w) return fail(w.error().message);
        }
    }
    if (o.json) {
        fmt::print("{}\n", json{{"dry_run", o.dry_run},
                                {"conf_path", o.conf_path},
                                {"changes", changes},
                                {"worst_case_ms", ms(policy.budget())}}
                               .dump(2));
        return 0;
    }
    fmt::print("{}{}:\n", o.dry_run ? "Would write " : "Wrote ", o.conf_path);
    fmt::print("{}\n", conf);
    fmt::print("{} in this network namespace:\n", o.dry_run ? "Would change" : "Changed");
    for (const auto& [s, before] : plan) {
        fmt::print("  {:<30} {:>6} -> {:<6}{}\n", s.name, before, s.value, before == s.value ? " (unchanged)" : "");
    }
    fmt::print("Idle dead peers on sockets with SO_KEEPALIVE {} noticed within {}.\n",
               o.dry_run ? "would be" : "are now", to_human(policy.budget()));
    return 0;
}

}  // namespace

void add_sysctl_command(CLI::App& app, Action& run) {
    auto opts = std::make_shared<SysctlOptions>();
    CLI::App* sysctl =
        app.add_subcommand("sysctl",
                           "Show the kernel's TCP keepalive settings and the worst-case detection time they imply;\n"
                           "advise values for a target; apply them. Without a subcommand: `show`.");
    sysctl->add_flag("--json", opts->json, "Print JSON for scripts");
    sysctl->callback([opts, &run, sysctl] {
        if (sysctl->get_subcommands().empty()) run = [opts] { return run_show(*opts); };
    });

    CLI::App* show = sysctl->add_subcommand("show", "Print the settings and what they imply (the default)");
    show->add_flag("--json", opts->json, "Print JSON for scripts");
    show->callback([opts, &run] { run = [opts] { return run_show(*opts); }; });

    CLI::App* advise = sysctl->add_subcommand(
        "advise",
        "Suggest keepalive idle/interval/count whose worst case meets --target, with the probe\n"
        "traffic it costs, a `sysctl -w` line and an /etc/sysctl.d/ snippet. Half the budget goes to\n"
        "idle time, half to three probes; --nat-timeout keeps idle below 2/3 of a NAT's idle timeout.");
    add_duration_option(*advise, "--target", opts->target, "Longest acceptable time to notice a dead peer")->required();
    add_duration_option(*advise, "--nat-timeout", opts->nat_timeout,
                        "Idle timeout of a NAT or firewall in the path (0 = none)");
    advise->add_flag("--json", opts->json, "Print JSON for scripts");
    advise->callback([opts, &run] { run = [opts] { return run_advise(*opts); }; });

    CLI::App* apply = sysctl->add_subcommand(
        "apply",
        "Write the advised (or given) keepalive sysctls to /etc/sysctl.d/90-lifeline.conf and set them\n"
        "in this network namespace. Needs root, except with --dry-run.");
    auto* target = add_duration_option(*apply, "--target", opts->target, "Detection target, as for `advise`");
    add_duration_option(*apply, "--nat-timeout", opts->nat_timeout, "As for `advise`");
    auto* ka = apply->add_option("--keepalive", opts->keepalive,
                                 "Explicit IDLE:INTERVAL:COUNT instead of --target, e.g. 7s:1s:3");
    target->excludes(ka);
    apply->add_flag("--dry-run", opts->dry_run, "Show what would change; change nothing");
    apply->add_option("--conf", opts->conf_path, "The sysctl.d file to write")->capture_default_str();
    apply->add_flag("--json", opts->json, "Print JSON for scripts");
    apply->callback([opts, &run, target, ka] {
        if (target->count() == 0 && ka->count() == 0)
            throw CLI::ValidationError("apply", "give --target or --keepalive");
        run = [opts] { return run_apply(*opts); };
    });
}

}  // namespace lifeline::cli
