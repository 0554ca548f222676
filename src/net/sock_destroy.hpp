// Ending a TCP connection from outside its owner: sock_diag SOCK_DESTROY (the
// interface `ss --kill` uses). The kernel aborts the socket (tcp_abort): it
// sends a RST to the peer, moves to CLOSE, and sets the socket's error to
// ECONNABORTED, which its owner gets on its next (or current, blocked) call.
//
// Needs CAP_NET_ADMIN in the socket's network namespace and a kernel built with
// CONFIG_INET_DIAG_DESTROY; without it the kernel answers EOPNOTSUPP, and the
// error says so. Threads: any.
#pragma once

#include "lifeline/result.hpp"
#include "net/sock_diag.hpp"

namespace lifeline::net {

// Destroys the socket `s` names (addresses, interface and cookie as sock_diag
// reported them). ENOENT: it is gone already; ESTALE: another socket now has
// those addresses (nothing was destroyed).
Result<void> destroy_tcp_socket(const DiagSocket& s);

}  // namespace lifeline::net
