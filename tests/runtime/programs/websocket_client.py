#!/usr/bin/python3
"""A WebSocket client nobody here wrote the protocol of: python3-websockets.

Connects to URI, then sends a text message every 100 ms and prints one line
per echo ("echo <text>"), answering the server's pings as the library does by
itself. Prints "open" once connected and "closed <code>" when the server
closes. Used by tests/runtime/websocket_python_test.cpp.
"""
import asyncio
import sys

import websockets


async def main(uri: str) -> int:
    # ping_interval=None: the client never pings; only the server's pings
    # (answered by the library) keep the connection judged alive.
    async with websockets.connect(uri, ping_interval=None) as ws:
        print("open", flush=True)
        n = 0
        try:
            while True:
                await ws.send(f"message {n} é")
                print("echo", await ws.recv(), flush=True)
                n += 1
                await asyncio.sleep(0.1)
        except websockets.ConnectionClosed as closed:
            print("closed", closed.rcvd.code if closed.rcvd else "none", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
