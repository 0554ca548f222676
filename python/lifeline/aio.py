"""An asyncio client for lifeline's heartbeat protocol, on the C++ engine.

    async def main():
        client = await lifeline.aio.connect("127.0.0.1", 8888, id="sensor-7")
        await client.send(b"hello")
        async for event in client.events():
            print(event)          # {"kind": "message", ...}, {"kind": "dead", "reason": ...}

It heartbeats on its own, reports `dead` with the reason when the server goes
silent past the timeout, and (reconnect=True) connects again with backoff,
presenting its resume token so the server replaces its old connection.
"""
import asyncio
import random
import time

from . import ClientSession


class Client:
    """One logical client across reconnects. Events come from events()."""

    def __init__(self, host, port, *, id="", token=b"", interval=1.0, timeout=3.0, reconnect=True,
                 backoff=(0.1, 5.0)):
        self._host, self._port = host, port
        self._id, self._token = id, token
        self._interval, self._timeout = interval, timeout
        self._reconnect, self._backoff = reconnect, backoff
        self._resume = b""
        self._queue = asyncio.Queue()
        self._session = None
        self._writer = None
        self._opened = asyncio.Event()
        self._task = None
        self._closing = False
        self.connections = 0

    async def _start(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        opened = asyncio.ensure_future(self._opened.wait())
        await asyncio.wait({opened, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not self._opened.is_set():
            opened.cancel()
            self._task.result()  # Raises what ended it (a LifelineError, an OSError).
            raise ConnectionError(f"lifeline: could not connect to {self._host}:{self._port}")
        return self

    async def send(self, payload: bytes):
        """Queues application data (one DATA frame) on the current connection."""
        await self._opened.wait()
        self._session.send(payload)
        self._flush()

    async def events(self):
        """Yields event dicts: opened, message, rtt, dead, closed, reconnecting."""
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def close(self):
        self._closing = True
        if self._session is not None:
            self._session.close()
            self._flush()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._queue.put_nowait(None)

    def _flush(self):
        while (data := self._session.poll_transmit()) is not None:
            self._writer.write(data)

    def _drain_events(self):
        ended = False
        for event in iter(self._session.poll_event, None):
            if event["kind"] == "opened":
                self._resume = self._session.resume_token
                self._opened.set()
            if event["kind"] == "closed":
                ended = True
            self._queue.put_nowait(event)
        return ended

    async def _one_connection(self):
        """Returns whether the session opened (the WELCOME came)."""
        reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self.connections += 1
        opened = False
        try:
            self._session = ClientSession(time.monotonic_ns(), interval=self._interval, timeout=self._timeout,
                                          id=self._id, credential=self._token, resume_token=self._resume)
            self._flush()
            while True:
                deadline = self._session.next_timeout()
                wait = None if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
                try:
                    data = await asyncio.wait_for(reader.read(65536), wait)
                    if not data:
                        self._session.abort("the server closed the connection")
                    else:
                        self._session.receive(data, time.monotonic_ns())
                except asyncio.TimeoutError:
                    self._session.handle_timeout(time.monotonic_ns())
                self._flush()
                opened = opened or self._opened.is_set()
                if self._drain_events():
                    return opened or self._opened.is_set()
        finally:
            self._opened.clear()
            self._writer.close()

    async def _run(self):
        delay = self._backoff[0]
        while not self._closing:
            try:
                # Back off from scratch only after a session that opened: a
                # server that accepts and closes at once gets the growing delay.
                if await self._one_connection():
                    delay = self._backoff[0]
            except OSError as error:
                self._queue.put_nowait({"kind": "closed", "reason": "unreachable", "message": str(error)})
            if not self._reconnect or self._closing:
                self._queue.put_nowait(None)
                return
            self._queue.put_nowait({"kind": "reconnecting", "after": delay})
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # Jittered: no thundering herd.
            delay = min(delay * 2, self._backoff[1])


async def connect(host, port, **options) -> Client:
    """Connects (waits for the WELCOME) and returns the running Client."""
    return await Client(host, port, **options)._start()
