"""lifeline.aio against the real `lifeline serve`: heartbeats, dead-server
detection with the right reason, and reconnecting with the resume token."""
import asyncio
import signal

import pytest

import lifeline.aio


async def next_event(client, kind, timeout):
    async def find():
        async for event in client.events():
            if event["kind"] == kind:
                return event
    return await asyncio.wait_for(find(), timeout)


@pytest.mark.asyncio
async def test_connect_without_a_server_raises_instead_of_hanging():
    with pytest.raises(OSError):
        await asyncio.wait_for(lifeline.aio.connect("127.0.0.1", 9, reconnect=False), 10)


@pytest.mark.asyncio
async def test_a_stopped_server_is_dead_and_a_running_one_is_reconnected_to(serve):
    proc, port = serve("--heartbeat", "200ms", "--timeout", "1s", "--echo")
    client = await lifeline.aio.connect("127.0.0.1", port, id="py-aio-1", interval=0.2, timeout=1.0)
    try:
        await client.send(b"hello")
        message = await next_event(client, "message", 5)
        assert message["payload"] == b"hello"

        proc.send_signal(signal.SIGSTOP)  # Hung, not gone: only heartbeats can tell.
        dead = await next_event(client, "dead", 1.0 + 2.0)
        assert dead["reason"] == "heartbeat_timeout"
        proc.send_signal(signal.SIGCONT)

        await next_event(client, "reconnecting", 5)
        reopened = await next_event(client, "opened", 10)
        assert reopened["client_id"] == "py-aio-1"
        assert client.connections == 2
        await client.send(b"again")
        assert (await next_event(client, "message", 5))["payload"] == b"again"
    finally:
        await client.close()
