// The kernel's view of one TCP socket (getsockopt TCP_INFO / sock_diag
// INET_DIAG_INFO), in lifeline's types, and the classification of a socket
// error into a DisconnectReason.
//
// Threads: any. Errors: read_tcp_info() fails with Errc::system (the errno of
// getsockopt: EBADF, ENOTSOCK, EOPNOTSUPP for a socket that is not TCP); the
// classifiers are pure functions and never fail.
#pragma once

#include <cstdint>
#include <string_view>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

struct tcp_info;

namespace lifeline::sys {

// TCP states as the kernel numbers them (include/net/tcp_states.h).
enum class TcpState : std::uint8_t {
    established = 1,
    syn_sent,
    syn_recv,
    fin_wait1,
    fin_wait2,
    time_wait,
    close,
    close_wait,
    last_ack,
    listen,
    closing,
    new_syn_recv,
};
std::string_view to_string(TcpState state);

struct TcpInfo {
    TcpState state = TcpState::close;
    Duration rtt;                  // smoothed, tcpi_rtt
    Duration rttvar;               // tcpi_rttvar
    Duration rto;                  // current retransmission timeout
    std::uint32_t unacked = 0;     // segments sent and not yet acknowledged
    std::uint8_t retransmits = 0;  // consecutive retransmissions of the head segment (tcpi_retransmits)
    std::uint8_t probes = 0;       // keepalive or zero-window probes sent without answer (tcpi_probes)
    std::uint8_t backoff = 0;      // exponential backoff of the RTO
    std::uint32_t total_retrans = 0;
    Duration last_data_sent;      // ago
    Duration last_data_received;  // ago
    Duration last_ack_received;   // ago
    std::uint32_t snd_wnd = 0;    // the peer's advertised window (0 = zero window)
    std::uint32_t notsent_bytes = 0;
};

// Converts the kernel's struct (from <linux/tcp.h>; getsockopt or INET_DIAG_INFO).
TcpInfo from_kernel(const struct tcp_info& info);

// getsockopt(fd, IPPROTO_TCP, TCP_INFO).
Result<TcpInfo> read_tcp_info(int fd);

// Why a connection's output stopped draining, as the kernel sees it.
enum class OutputStall : std::uint8_t {
    peer_not_reading,  // ACKs still arrive (a zero window, window probes answered): a slow consumer.
    path_dead,         // Data or window probes go unanswered: the path or the host is gone.
};
std::string_view to_string(OutputStall stall);

// The rule (docs/TUNING.md, "Slow consumer or dead path"): the path is dead
// when data is outstanding (tcpi_unacked), its head has been retransmitted
// (tcpi_retransmits) and no ACK came for max(200 ms, 2 x tcpi_rtt)
// (tcpi_last_ack_recv); or when the peer advertises a zero window
// (tcpi_snd_wnd) and two or more window probes went unanswered (tcpi_probes,
// which every ACK resets). Anything else is a live peer that does not read.
OutputStall classify_output_stall(const TcpInfo& info);

// Maps a socket's pending error (SO_ERROR, or errno from recv/send) to a reason.
// ETIMEDOUT is ambiguous: keepalive and TCP_USER_TIMEOUT both end a connection
// with it. With `info` read after the error: unacknowledged data means the user
// timeout (or retransmission limit) fired, none means keepalive probes went
// unanswered; data sent after the last ACK arrived (tcpi_last_data_sent <
// tcpi_last_ack_recv) counts as unacknowledged too, since the kernel may have
// emptied its queue (and tcpi_unacked) by the time `info` is read. One exception: TCP_USER_TIMEOUT also ends a live
// peer that has advertised a zero window for that long (its window probes count), so a zero window with data waiting to
// go (tcpi_notsent_bytes), no data retransmission under way and the last window probe answered is slow_consumer.
// Without `info`, ETIMEDOUT is keepalive_timeout. `output_pending`: the caller still had bytes queued for the socket
// when it failed, so data was in flight and keepalive (which only probes an idle connection) cannot have fired: the
// user timeout did, even if the kernel already emptied its retransmission
// queue (and so tcpi_unacked) by the time `info` was read.
DisconnectReason classify_socket_error(int err, const TcpInfo* info, bool output_pending = false);

}  // namespace lifeline::sys
