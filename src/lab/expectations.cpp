#include "lab/expectations.hpp"

#include <fmt/core.h>

#include <algorithm>

namespace lifeline::lab {

namespace {

using Kind = SideExpectation::Kind;
using R = DisconnectReason;

bool has_heartbeat(Mechanism m) { return has_heartbeats(m); }
bool has_keepalive(Mechanism m) {
    return m == Mechanism::keepalive || m == Mechanism::keepalive_user_timeout || m == Mechanism::all;
}
bool has_user_timeout(Mechanism m) { return m == Mechanism::keepalive_user_timeout || m == Mechanism::all; }

SideExpectation detect(std::vector<R> reasons, std::optional<Duration> budget) {
    return {Kind::detect, std::move(reasons), budget};
}
SideExpectation not_detect() { return {Kind::not_detect, {}, std::nullopt}; }
SideExpectation either(std::vector<R> reasons) { return {Kind::either, std::move(reasons), std::nullopt}; }
SideExpectation ignore() { return {Kind::ignore, {}, std::nullopt}; }

// A side that hears nothing from its peer: heartbeats convict first, then keepalive.
SideExpectation silent_peer(Mechanism m, const LabConfig& c) {
    if (has_heartbeat(m)) return detect({R::heartbeat_timeout}, heartbeat_budget(c));
    // With TCP_USER_TIMEOUT set, Linux ends keepalive by that timeout instead
    // of the probe count (tcp_keepalive_timer): the first probe goes out after
    // idle + interval at the earliest, and the abort comes at the user timeout.
    if (has_user_timeout(m)) {
        return detect({R::keepalive_timeout}, std::max(c.user_timeout, c.keepalive_idle + c.keepalive_interval));
    }
    if (has_keepalive(m)) return detect({R::keepalive_timeout}, keepalive_budget(c));
    return not_detect();
}

// Whatever a side may legitimately report once its peer is cut off somehow.
const std::vector<R> kAnyLoss = {R::heartbeat_timeout, R::keepalive_timeout, R::user_timeout,
                                 R::peer_closed,       R::peer_reset,        R::slow_consumer};

CellExpectation make(Fault fault, Mechanism m, const LabConfig& c) {
    // run and protect: a protected server, a client with nothing.
    const Mechanism ms = side_mechanism(m, Side::server);
    const Mechanism mc = side_mechanism(m, Side::client);
    CellExpectation e;
    switch (fault) {
        case Fault::cable_pull:
            e.server = silent_peer(ms, c);
            e.client = silent_peer(mc, c);
            break;
        case Fault::blackhole_out:
            // The server hears nothing; the client still hears the server.
            e.server = silent_peer(ms, c);
            e.client = either(kAnyLoss);
            break;
        case Fault::blackhole_in:
            e.server = either(kAnyLoss);
            e.client = silent_peer(mc, c);
            break;
        case Fault::freeze:
            // The frozen process's kernel answers keepalive probes: only heartbeats see it.
            e.server = has_heartbeat(ms) ? detect({R::heartbeat_timeout}, heartbeat_budget(c)) : not_detect();
            e.client = not_detect();
            break;
        case Fault::crash:
            // The kernel closes the socket: every mechanism, even none, hears the FIN at once.
            e.server = detect({R::peer_closed, R::peer_reset}, std::nullopt);
            e.client = ignore();
            break;
        case Fault::host_reboot:
            // Only a side that sends something meets the RST.
            if (has_heartbeat(ms)) {
                e.server = detect({R::peer_reset, R::heartbeat_timeout}, heartbeat_budget(c));
            } else if (has_keepalive(ms)) {
                e.server = detect({R::peer_reset, R::keepalive_timeout}, keepalive_budget(c));
            } else {
                e.server = not_detect();
            }
            e.client = ignore();
            break;
        case Fault::transfer_cut:
            // Unacknowledged data stops keepalive; only the user timeout (or heartbeats) end it.
            if (has_heartbeat(ms)) {
                e.server = detect({R::heartbeat_timeout}, heartbeat_budget(c));
            } else if (has_user_timeout(ms)) {
                e.server = detect({R::user_timeout}, c.user_timeout);
            } else {
                e.server = not_detect();
            }
            e.client = silent_peer(mc, c);
            break;
        case Fault::stuck_reader:
            // The output budget runs out (the user timeout may also abort a zero window).
            e.server = detect({R::slow_consumer, R::user_timeout}, std::nullopt);
            e.client = either(kAnyLoss);
            break;
        case Fault::server_stall:
            // The server's stall guard must forgive the silence it caused itself.
            e.server = not_detect();
            e.client = not_detect();
            break;
        case Fault::nat_expiry:
            if (keeps_nat_flow(m, c)) {
                // Heartbeats or keepalive probes refresh the flow: it never
                // idles out, the messages arrive, nothing ends.
                e.server = not_detect();
                e.client = not_detect();
                e.loss = Loss::none;
            } else {
                // The flow was forgotten: the messages vanish. Whoever notices
                // does so by its own silence or the user timeout.
                e.server = either(kAnyLoss);
                e.client = either(kAnyLoss);
                e.loss = Loss::some;
            }
            break;
        case Fault::server_reboot:
            // The mirror of host_reboot: only a client that sends meets the RST.
            if (has_heartbeat(mc)) {
                e.client = detect({R::peer_reset, R::heartbeat_timeout}, heartbeat_budget(c));
            } else if (has_keepalive(mc)) {
                e.client = detect({R::peer_reset, R::keepalive_timeout}, keepalive_budget(c));
            } else {
                e.client = not_detect();
            }
            e.server = ignore();
            break;
    }
    return e;
}

std::string reasons_text(const std::vector<R>& reasons) {
    std::string s;
    for (R r : reasons) s += (s.empty() ? "" : " or ") + std::string(to_string(r));
    return s;
}

std::string ms_text(Duration d) { return fmt::format("{} ms", d.ms()); }

void judge_side(Side side, const SideOutcome& got, const SideExpectation& want, Duration tolerance, Duration limit,
                std::vector<std::string>& findings) {
    const std::string who(to_string(side));
    switch (want.kind) {
        case Kind::ignore:
            return;
        case Kind::not_detect:
            if (got.detected)
                findings.push_back(fmt::format("{}: UNEXPECTED {} after {} (expected no detection within {})", who,
                                               got.reason ? to_string(*got.reason) : "close", ms_text(got.latency),
                                               ms_text(limit)));
            return;
        case Kind::detect:
            if (!got.detected) {
                findings.push_back(fmt::format("{}: MISSED, expected {} within {}", who, reasons_text(want.reasons),
                                               want.budget ? ms_text(*want.budget + tolerance) : ms_text(limit)));
                return;
            }
            break;
        case Kind::either:
            if (!got.detected) return;
            break;
    }
    if (!got.reason || std::find(want.reasons.begin(), want.reasons.end(), *got.reason) == want.reasons.end()) {
        findings.push_back(fmt::format("{}: WRONG REASON {}, expected {}", who,
                                       got.reason ? to_string(*got.reason) : "none", reasons_text(want.reasons)));
    }
    if (got.latency < Duration::zero()) {
        findings.push_back(fmt::format("{}: ended {} before the fault", who, ms_text(Duration::zero() - got.latency)));
    }
    if (want.kind == Kind::detect && want.budget && got.latency > *want.budget + tolerance) {
        findings.push_back(fmt::format("{}: LATE, {} > budget {} + {}", who, ms_text(got.latency),
                                       ms_text(*want.budget), ms_text(tolerance)));
    }
}

void judge_loss(std::optional<std::uint64_t> lost, Loss want, std::vector<std::string>& findings) {
    if (want == Loss::any) return;
    if (!lost) {
        findings.push_back("lost: UNEXPECTED: no byte counts (a side did not report its closed event)");
    } else if (want == Loss::none && *lost > 0) {
        findings.push_back(fmt::format("lost: UNEXPECTED loss of {} bytes (expected none)", *lost));
    } else if (want == Loss::some && *lost == 0) {
        findings.push_back("lost: UNEXPECTED: nothing lost (expected the fault to eat messages)");
    }
}

}  // namespace

Duration heartbeat_budget(const LabConfig& c) { return c.heartbeat_timeout; }

bool carries_application_data(Fault fault) {
    return fault == Fault::transfer_cut || fault == Fault::stuck_reader || fault == Fault::nat_expiry;
}

bool keeps_nat_flow(Mechanism m, const LabConfig& c) {
    // The quiet gap on the flow: a heartbeat interval, or keepalive's idle
    // time then its interval. A probe and its ACK take far less than the
    // margin. Either side's traffic keeps the flow.
    const auto side_keeps = [&](Mechanism side) {
        if (has_heartbeat(side)) return c.heartbeat_interval < c.nat_timeout;
        if (has_keepalive(side)) return std::max(c.keepalive_idle, c.keepalive_interval) < c.nat_timeout;
        return false;
    };
    return side_keeps(side_mechanism(m, Side::server)) || side_keeps(side_mechanism(m, Side::client));
}

Duration keepalive_budget(const LabConfig& c) { return c.keepalive_idle + c.keepalive_interval * c.keepalive_count; }

CellExpectation expect(Fault fault, Mechanism mechanism, const LabConfig& config) {
    CellExpectation e = make(fault, mechanism, config);
    for (const SideExpectation* s : {&e.server, &e.client}) {
        if (s->kind == Kind::detect && s->budget && (!e.budget || *s->budget < *e.budget)) e.budget = s->budget;
    }
    e.tolerance = e.budget && *e.budget == heartbeat_budget(config) && has_heartbeat(mechanism) ? kHeartbeatTolerance
                                                                                                : kKernelTolerance;
    return e;
}

void judge(CellResult& cell, const CellExpectation& expectation, Duration limit) {
    cell.budget = expectation.budget;
    cell.tolerance = expectation.tolerance;
    cell.findings.clear();
    const auto tolerance_for = [&](const SideExpectation& s) {
        return s.budget && *s.budget == expectation.budget ? expectation.tolerance : kKernelTolerance;
    };
    judge_side(Side::server, cell.server, expectation.server, tolerance_for(expectation.server), limit, cell.findings);
    judge_side(Side::client, cell.client, expectation.client, tolerance_for(expectation.client), limit, cell.findings);
    judge_loss(cell.lost_bytes, expectation.loss, cell.findings);
    cell.as_expected = cell.findings.empty();
}

}  // namespace lifeline::lab
