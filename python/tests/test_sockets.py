"""The socket helpers, read back with the standard library's getsockopt."""
import socket

import pytest

import lifeline


def connected_pair():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


def test_apply_keepalive_sets_what_getsockopt_reads_back():
    client, server = connected_pair()
    with client, server:
        got = lifeline.apply_keepalive(client, idle=7, interval=2, count=4)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
        # user_timeout=None: the keepalive budget, 7 + 2 * 4 = 15 s.
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 15000
        assert got.enabled and got.idle == 7 and got.count == 4 and got.user_timeout == 15
        assert lifeline.read_keepalive(client.fileno()).interval == 2


def test_user_timeout_and_tcp_info():
    client, server = connected_pair()
    with client, server:
        assert lifeline.apply_user_timeout(client, 9.5) == 9.5
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9500
        info = lifeline.tcp_info(client)
        assert info.state == "established"
        assert info.unacked == 0 and info.rtt >= 0


def test_errors_are_lifeline_errors_with_a_code():
    client, server = connected_pair()
    with client, server:
        with pytest.raises(lifeline.LifelineError) as error:
            lifeline.apply_keepalive(client, idle=99999, interval=1, count=1)
        assert error.value.code == "invalid_argument"
        assert "32767" in error.value.message
    with pytest.raises(lifeline.LifelineError) as closed:
        lifeline.read_keepalive(client)  # Closed: fileno() is -1.
    assert closed.value.code == "system"


def test_policy_for_a_detection_target():
    plan = lifeline.policy_for(detect_within=10)
    assert plan.heartbeat_timeout == 10
    assert plan.keepalive_idle + plan.keepalive_interval * plan.keepalive_count <= 10
    assert plan.explanation


def read_proc_sys(name):
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return int(f.read())


def test_inspect_lists_our_connection_with_its_keepalive_and_verdict():
    client, server = connected_pair()
    with client, server:
        lifeline.apply_keepalive(client, idle=7, interval=2, count=4)
        port = client.getsockname()[1]
        rows = [r for r in lifeline.inspect(port=port) if r.local == "127.0.0.1:%d" % port]
        assert len(rows) == 1, rows
        row = rows[0]
        assert row.state == "established"
        assert row.remote == "127.0.0.1:%d" % client.getpeername()[1]
        assert row.keepalive.enabled
        assert row.verdict == "healthy"
        assert row.tcp_info.state == "established"
        # The server side has no keepalive and no user timeout.
        peer = [r for r in lifeline.inspect(port=port) if r.remote == "127.0.0.1:%d" % port]
        assert len(peer) == 1 and peer[0].verdict == "unprotected"


def test_sysctl_reads_the_kernel_and_advises_for_a_target():
    s = lifeline.sysctl()
    assert s.keepalive_time == read_proc_sys("net.ipv4.tcp_keepalive_time")
    assert s.keepalive_probes == read_proc_sys("net.ipv4.tcp_keepalive_probes")
    assert s.idle_peer_detection == s.keepalive_time + s.keepalive_intvl * s.keepalive_probes
    assert not hasattr(s, "advice")
    advised = lifeline.sysctl(target=10)
    assert advised.advice.worst_case <= 10
    assert advised.advice.idle + advised.advice.interval * advised.advice.count == advised.advice.worst_case
    with pytest.raises(lifeline.LifelineError):
        lifeline.sysctl(target=0.001)
