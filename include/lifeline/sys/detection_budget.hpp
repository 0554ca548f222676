// What the kernel's TCP settings imply for dead-peer detection, and settings
// that meet a target. Pure arithmetic on documented kernel behaviour, shared by
// `lifeline sysctl`, `lifeline sysctl advise` and the server's --detect-within.
//
// Threads: any (pure functions). Errors: Errc::invalid_argument when the
// target cannot be met (too short for heartbeats; a NAT timeout shorter than
// the kernel's smallest keepalive), saying why.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

struct KeepaliveAdvice {
    KeepalivePolicy policy;          // Per-socket values (what lifeline applies).
    Duration worst_case;             // idle + interval * count
    double probes_per_hour = 0;      // Per idle, healthy connection: one probe + one ACK each.
    double bytes_per_hour = 0;       // On the wire, both directions, IPv4 + TCP timestamps + Ethernet.
    int retries2_within_target = 0;  // Largest tcp_retries2 whose give-up fits the target (host-wide option).
    std::vector<std::string> notes;  // Trade-offs and warnings, in sentences.
};

// Settings whose worst case for an idle dead peer is at most `target` and,
// with a NAT in the path that forgets idle flows after `nat_timeout`, whose
// idle time keeps the mapping alive. Errors when the kernel cannot do it
// (target below 2 s: use application heartbeats).
Result<KeepaliveAdvice> advise_keepalive(Duration target, std::optional<Duration> nat_timeout);

// Every knob derived from one target (`lifeline serve --detect-within 5s`):
//  - heartbeat timeout = target; interval = target / 3, so two heartbeats may
//    be lost or late before a healthy peer is at risk;
//  - kernel keepalive from advise_keepalive(target), user timeout auto, so a
//    peer lost with data in flight is caught in the same budget. Below 2 s the
//    kernel cannot follow (whole seconds); keepalive then gets the 2 s plan and
//    heartbeats alone meet the target.
struct DetectionPlan {
    Duration heartbeat_interval;
    Duration heartbeat_timeout;
    KeepalivePolicy keepalive;
    std::vector<std::string> explanation;  // One sentence per choice, for start-up output.
};
Result<DetectionPlan> policy_for_budget(Duration target);

}  // namespace lifeline
