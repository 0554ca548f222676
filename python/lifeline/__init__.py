"""lifeline for Python: notice dead peers on long-lived TCP connections.

Socket helpers (any socket object, or a file descriptor):

    lifeline.apply_keepalive(sock, idle=10, interval=2, count=3)   # + TCP_USER_TIMEOUT (auto)
    lifeline.apply_user_timeout(sock, 16)
    lifeline.read_keepalive(sock)    # what the kernel has now
    lifeline.tcp_info(sock)          # TCP_INFO with named fields
    lifeline.policy_for(detect_within=10)

The host (this network namespace), as `lifeline inspect` and `lifeline sysctl` show it:

    lifeline.inspect(port=8888)      # TCP connections with the kernel's verdict on each
    lifeline.sysctl(target=10)       # the keepalive sysctls, what they imply, advice

The sans-I/O engine (bytes in, bytes and events out, times in nanoseconds of
time.monotonic_ns()): ClientSession and ServerSession, the same C++ objects
`lifeline serve` and `connect` drive. lifeline.aio.connect() is an asyncio
client built on ClientSession.

Errors raise LifelineError(code, message). Durations are seconds (float).
"""
from types import SimpleNamespace as _Namespace

from . import _lifeline
from ._errors import LifelineError

ClientSession = _lifeline.ClientSession
ServerSession = _lifeline.ServerSession

__all__ = [
    "LifelineError",
    "ClientSession",
    "ServerSession",
    "apply_keepalive",
    "apply_user_timeout",
    "read_keepalive",
    "tcp_info",
    "policy_for",
    "inspect",
    "sysctl",
]


def apply_keepalive(sock, idle: float, interval: float, count: int, user_timeout: float | None = None):
    """Turns SO_KEEPALIVE on with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT and sets
    TCP_USER_TIMEOUT (None: the keepalive budget, idle + interval * count;
    0: off). Returns the values read back from the kernel."""
    return _Namespace(**_lifeline.apply_keepalive(sock, idle, interval, count, user_timeout))


def apply_user_timeout(sock, seconds: float) -> float:
    """Sets TCP_USER_TIMEOUT; returns the value read back (seconds)."""
    return _lifeline.apply_user_timeout(sock, seconds)


def read_keepalive(sock):
    """The socket's keepalive options and user timeout as the kernel has them."""
    return _Namespace(**_lifeline.read_keepalive(sock))


def tcp_info(sock):
    """getsockopt(TCP_INFO): state, rtt, unacked, retransmits, probes, ... (durations in seconds)."""
    return _Namespace(**_lifeline.tcp_info(sock))


def policy_for(detect_within: float):
    """What `--detect-within` derives from one target: heartbeat interval and
    timeout, kernel keepalive and user timeout, and why."""
    return _Namespace(**_lifeline.policy_for(detect_within))


def inspect(port: int | None = None, established_only: bool = True):
    """The host's TCP connections (this network namespace, from sock_diag):
    local, remote, state, verdict (healthy, probing, retransmitting,
    zero_window, unprotected), time_left (seconds until the kernel gives up;
    inf when it never will), keepalive (as the kernel reports it; inferred
    from its timer for sockets of other processes), queues and tcp_info.
    `port` keeps connections with that local or remote port."""
    out = []
    for row in _lifeline.inspect(port, established_only):
        row["keepalive"] = _Namespace(**row["keepalive"])
        if "tcp_info" in row:
            row["tcp_info"] = _Namespace(**row["tcp_info"])
        out.append(_Namespace(**row))
    return out


def sysctl(target: float = 0, nat_timeout: float | None = None):
    """The kernel's dead-peer settings (net.ipv4.tcp_keepalive_*, tcp_retries2,
    tcp_syn_retries) and what they imply: idle_peer_detection,
    retransmission_give_up and connect_give_up (seconds). With a detection
    `target` (seconds), `advice` holds the keepalive values that meet it
    (and fit under `nat_timeout`), as `lifeline sysctl advise` gives them."""
    d = _lifeline.sysctl(target, nat_timeout)
    if "advice" in d:
        d["advice"] = _Namespace(**d["advice"])
    return _Namespace(**d)
