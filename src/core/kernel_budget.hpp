// What the kernel's TCP settings imply for dead-peer detection, and settings
// that meet a target. Pure arithmetic on documented kernel behaviour, shared by
// `lifeline sysctl`, `lifeline sysctl advise` and the server's --detect-within.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// The per-network-namespace sysctls under net.ipv4 that decide detection.
struct TcpKernelSettings {
    Duration keepalive_time = Duration::seconds(7200);  // tcp_keepalive_time
    Duration keepalive_intvl = Duration::seconds(75);   // tcp_keepalive_intvl
    int keepalive_probes = 9;                           // tcp_keepalive_probes
    int retries2 = 15;                                  // tcp_retries2
    int syn_retries = 6;                                // tcp_syn_retries
};

// Kernel constants (include/net/tcp.h).
inline constexpr Duration kTcpRtoMin = Duration::milliseconds(200);
inline constexpr Duration kTcpRtoMax = Duration::seconds(120);
inline constexpr Duration kTcpInitialRto = Duration::seconds(1);  // RFC 6298 (2.1); SYNs start here.

// An idle connection whose peer vanished: time + intvl * probes.
Duration idle_peer_detection(const TcpKernelSettings& s);

// A peer lost with data in flight: when retransmissions give up. The kernel
// (net/ipv4/tcp_timer.c, retransmits_timed_out / tcp_model_timeout) models it
// as exponential backoff from TCP_RTO_MIN, capped at TCP_RTO_MAX: with
// thresh = ilog2(RTO_MAX / RTO_MIN) = 9, the limit is (2^(r+1) - 1) * RTO_MIN
// for r <= thresh, else (2^(thresh+1) - 1) * RTO_MIN + (r - thresh) * RTO_MAX.
// retries2 = 15 gives 924.6 s.
Duration retransmission_give_up(int retries2);

// A connect() to a host that never answers: SYN retransmissions from a 1 s RTO,
// doubling, capped at TCP_RTO_MAX, then one more backoff before giving up
// (syn_retries = 6 gives 1+2+4+8+16+32+64 = 127 s).
Duration connect_give_up(int syn_retries);

struct KeepaliveAdvice {
    KeepalivePolicy policy;            // Per-socket values (what lifeline applies).
    Duration worst_case;               // idle + interval * count
    double probes_per_hour = 0;        // Per idle, healthy connection: one probe + one ACK each.
    double bytes_per_hour = 0;         // On the wire, both directions, IPv4 + TCP timestamps + Ethernet.
    int retries2_within_target = 0;    // Largest tcp_retries2 whose give-up fits the target (host-wide option).
    std::vector<std::string> notes;    // Trade-offs and warnings, in sentences.
};

// Settings whose worst case for an idle dead peer is at most `target` and,
// with a NAT in the path that forgets idle flows after `nat_timeout`, whose
// idle time keeps the mapping alive. Errors when the kernel cannot do it
// (target below 2 s: use application heartbeats).
Result<KeepaliveAdvice> advise_keepalive(Duration target, std::optional<Duration> nat_timeout);

}  // namespace lifeline
