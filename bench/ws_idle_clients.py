#!/usr/bin/python3
"""Opens COUNT idle WebSocket connections (python3-websockets) to URI and holds
them; the library answers the server's pings. Prints "connected COUNT" once
all are open. For bench/websocket_idle_memory.sh.

    ws_idle_clients.py URI COUNT [CA_FILE]
"""
import asyncio
import ssl
import sys

import websockets


async def main(uri: str, count: int, ca_file: str | None) -> None:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    prefix = uri.rstrip("/").rsplit("/", 1)[-1]  # ids like live-123: unique per run of this script
    gate = asyncio.Semaphore(200)  # At most 200 handshakes in flight.
    held = []

    async def open_one(i: int) -> None:
        async with gate:
            held.append(await websockets.connect(f"{uri}?id={prefix}-{i}", ssl=context, ping_interval=None,
                                                 open_timeout=60))

    await asyncio.gather(*(open_one(i) for i in range(count)))
    print("connected", len(held), flush=True)
    await asyncio.Event().wait()  # Hold them until killed.


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
