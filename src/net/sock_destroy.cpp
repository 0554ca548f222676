// SOCK_DESTROY over NETLINK_SOCK_DIAG; see sock_destroy.hpp and man 7 sock_diag.
#include "net/sock_destroy.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::net {

namespace {

struct MnlSocketCloser {
    void operator()(mnl_socket* socket) const { mnl_socket_close(socket); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlSocketCloser>;

void fill_request(const DiagSocket& s, inet_diag_req_v2& request) {
    request.sdiag_family = static_cast<std::uint8_t>(s.local.family);
    request.sdiag_protocol = IPPROTO_TCP;
    request.idiag_states = ~0u;
    request.id.idiag_sport = htons(s.local.port);
    request.id.idiag_dport = htons(s.remote.port);
    const std::size_t bytes = s.local.family == AF_INET6 ? 16 : 4;
    std::memcpy(request.id.idiag_src, s.local.addr, bytes);
    std::memcpy(request.id.idiag_dst, s.remote.addr, bytes);
    request.id.idiag_if = s.interface;
    request.id.idiag_cookie[0] = s.cookie[0];
    request.id.idiag_cookie[1] = s.cookie[1];
}

Error destroy_error(const std::string& what, int errnum) {
    Error error = system_error(what, errnum);
    if (errnum == EOPNOTSUPP)
        error.message += " (the kernel is built without CONFIG_INET_DIAG_DESTROY)";
    else if (errnum == EPERM || errnum == EACCES)
        error.message += " (needs CAP_NET_ADMIN in the socket's network namespace)";
    else if (errnum == ENOENT)
        error.message += " (the socket is gone already)";
    else if (errnum == ESTALE)
        error.message += " (another socket has these addresses now; nothing destroyed)";
    return error;
}

}  // namespace

Result<void> destroy_tcp_socket(const DiagSocket& s) {
    const std::string what = "SOCK_DESTROY(" + s.local.to_string() + " -> " + s.remote.to_string() + ")";
    MnlSocket nl(mnl_socket_open(NETLINK_SOCK_DIAG));
    if (!nl) return system_error("socket(AF_NETLINK, NETLINK_SOCK_DIAG)", errno);
    // The kernel answers at once; the bound only guards against a wedged one.
    const timeval timeout{5, 0};
    if (::setsockopt(mnl_socket_get_fd(nl.get()), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0)
        return system_error("setsockopt(SO_RCVTIMEO) on a netlink socket", errno);
    if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return system_error("bind(NETLINK_SOCK_DIAG)", errno);

    std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buffer.data());
    nlh->nlmsg_type = SOCK_DESTROY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = 1;
    auto* request = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    fill_request(s, *request);
    if (mnl_socket_sendto(nl.get(), nlh, nlh->nlmsg_len) < 0) return system_error(what + ": sendto", errno);

    const ssize_t received = mnl_socket_recvfrom(nl.get(), buffer.data(), buffer.size());
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return make_error(Errc::timed_out, what + ": no answer from the kernel within 5 s");
        return system_error(what + ": recvfrom", errno);
    }
    // The answer is one NLMSG_ERROR: error 0 is the acknowledgement.
    const int run = mnl_cb_run(buffer.data(), static_cast<std::size_t>(received), 1, mnl_socket_get_portid(nl.get()),
                               nullptr, nullptr);
    if (run == MNL_CB_ERROR) return destroy_error(what, errno);
    return {};
}

}  // namespace lifeline::net
