"""The sans-I/O engine from Python: a ClientSession and a ServerSession joined
by hand on a made-up clock, so every rule is the C++ engine's."""
import lifeline

SECOND = 1_000_000_000


def pump(client, server, now):
    events = {"client": [], "server": []}
    for _ in range(20):
        moved = False
        while (data := client.poll_transmit()) is not None:
            server.receive(data, now)
            moved = True
        while (data := server.poll_transmit()) is not None:
            client.receive(data, now)
            moved = True
        events["client"] += list(iter(client.poll_event, None))
        events["server"] += list(iter(server.poll_event, None))
        if not moved:
            break
    return events


def test_handshake_data_and_a_silent_server_is_dead_within_its_timeout():
    now = 5 * SECOND
    client = lifeline.ClientSession(now, interval=0.5, timeout=2.0, id="py-sensor")
    server = lifeline.ServerSession(now, interval=0.5, timeout=2.0)
    events = pump(client, server, now)
    opened = [e for e in events["client"] if e["kind"] == "opened"]
    assert opened and opened[0]["client_id"] == "py-sensor" and opened[0]["timeout"] == 2.0
    assert client.open and client.granted_id == "py-sensor"

    client.send(b"reading 42")
    events = pump(client, server, now)
    assert [e["payload"] for e in events["server"] if e["kind"] == "message"] == [b"reading 42"]

    # The server goes silent: the client pings, hears nothing, and convicts it.
    dead = None
    while dead is None:
        now = client.next_timeout()
        client.handle_timeout(now)
        while client.poll_transmit() is not None:
            pass  # Lost on the way.
        dead = next((e for e in iter(client.poll_event, None) if e["kind"] == "dead"), None)
    assert dead["reason"] == "heartbeat_timeout"
    assert 2.0 <= dead["silence"] <= 2.1


def test_bad_bytes_end_the_session_with_a_protocol_error():
    server = lifeline.ServerSession(0)
    server.receive(b"\x00\x00\x00\x00garbage", 1)
    kinds = [e["kind"] for e in iter(server.poll_event, None)]
    assert kinds[-1] == "closed"
    assert "error" in kinds
