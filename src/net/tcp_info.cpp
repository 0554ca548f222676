#include "lifeline/sys/tcp_info.hpp"

// <linux/tcp.h>, not glibc's <netinet/tcp.h>: glibc's struct tcp_info stops
// before tcpi_snd_wnd and tcpi_notsent_bytes. The two headers cannot be mixed.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace lifeline::sys {

std::string_view to_string(TcpState state) {
    switch (state) {
        case TcpState::established:
            return "established";
        case TcpState::syn_sent:
            return "syn_sent";
        case TcpState::syn_recv:
            return "syn_recv";
        case TcpState::fin_wait1:
            return "fin_wait1";
        case TcpState::fin_wait2:
            return "fin_wait2";
        case TcpState::time_wait:
            return "time_wait";
        case TcpState::close:
            return "close";
        case TcpState::close_wait:
            return "close_wait";
        case TcpState::last_ack:
            return "last_ack";
        case TcpState::listen:
            return "listen";
        case TcpState::closing:
            return "closing";
        case TcpState::new_syn_recv:
            return "new_syn_recv";
    }
    return "unknown";
}

TcpInfo from_kernel(const struct tcp_info& k) {
    TcpInfo info;
    info.state = static_cast<TcpState>(k.tcpi_state);
    info.rtt = Duration::microseconds(k.tcpi_rtt);
    info.rttvar = Duration::microseconds(k.tcpi_rttvar);
    info.rto = Duration::microseconds(k.tcpi_rto);
    info.unacked = k.tcpi_unacked;
    info.retransmits = k.tcpi_retransmits;
    info.probes = k.tcpi_probes;
    info.backoff = k.tcpi_backoff;
    info.total_retrans = k.tcpi_total_retrans;
    info.last_data_sent = Duration::milliseconds(k.tcpi_last_data_sent);
    info.last_data_received = Duration::milliseconds(k.tcpi_last_data_recv);
    info.last_ack_received = Duration::milliseconds(k.tcpi_last_ack_recv);
    info.snd_wnd = k.tcpi_snd_wnd;
    info.notsent_bytes = k.tcpi_notsent_bytes;
    return info;
}

Result<TcpInfo> read_tcp_info(int fd) {
    struct tcp_info k {};
    socklen_t len = sizeof(k);
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &k, &len) != 0)
        return system_error("getsockopt(TCP_INFO) on socket " + std::to_string(fd), errno);
    return from_kernel(k);
}

std::string_view to_string(OutputStall stall) {
    switch (stall) {
        case OutputStall::peer_not_reading:
            return "peer_not_reading";
        case OutputStall::path_dead:
            return "path_dead";
    }
    return "unknown";
}

OutputStall classify_output_stall(const TcpInfo& info) {
    // 200 ms is the kernel's minimum RTO (TCP_RTO_MIN): no retransmission,
    // and so no verdict about one, comes sooner.
    const Duration ack_silence = std::max(Duration::milliseconds(200), info.rtt * 2);
    if (info.unacked > 0 && info.retransmits > 0 && info.last_ack_received >= ack_silence)
        return OutputStall::path_dead;
    if (info.snd_wnd == 0 && info.probes >= 2) return OutputStall::path_dead;
    return OutputStall::peer_not_reading;
}

namespace {

// ETIMEDOUT from the zero-window probe timer of a peer that kept answering.
bool zero_window_timed_out(const TcpInfo& info) {
    return info.snd_wnd == 0 && info.retransmits == 0 && info.notsent_bytes > 0 && info.probes <= 1;
}

}  // namespace

DisconnectReason classify_socket_error(int err, const TcpInfo* info, bool output_pending) {
    switch (err) {
        case ETIMEDOUT:
            if (info != nullptr && zero_window_timed_out(*info)) return DisconnectReason::slow_consumer;
            if (output_pending) return DisconnectReason::user_timeout;
            // The window was shut when the path died: the kernel was probing
            // it for data it held (keepalive never probes with data queued),
            // and the user timeout ended that. The peer's ACKs to earlier
            // window probes make the timestamps below look idle.
            if (info != nullptr && info->snd_wnd == 0 && (info->notsent_bytes > 0 || info->probes > 1))
                return DisconnectReason::user_timeout;
            // Both mechanisms end with ETIMEDOUT; what was outstanding tells them
            // apart. The kernel may already have emptied its retransmission
            // queue (tcpi_unacked 0) when we look, but the timestamps stay:
            // new data sent after the last ACK arrived was never acknowledged.
            if (info != nullptr && (info->unacked > 0 || info->retransmits > 0 || info->backoff > 0 ||
                                    info->last_data_sent < info->last_ack_received))
                return DisconnectReason::user_timeout;
            return DisconnectReason::keepalive_timeout;
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EHOSTDOWN:
        case ENETDOWN:
            return DisconnectReason::unreachable;
        case ECONNRESET:
        case EPIPE:
        case ECONNABORTED:
        case ECONNREFUSED:
            return DisconnectReason::peer_reset;
        case 0:
            return DisconnectReason::peer_closed;
        default:
            return DisconnectReason::peer_reset;
    }
}

}  // namespace lifeline::sys
