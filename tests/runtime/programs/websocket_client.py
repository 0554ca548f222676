#!/usr/bin/python3
"""A WebSocket client nobody here wrote the protocol of: python3-websockets.

Connects to URI, then sends a text message every 100 ms and prints one line
per echo ("echo <text>"), answering the server's pings as the library does by
itself. Prints "open" once connected (then "resume <hex>" when the server
issued a resume token), "closed <code>" when the server closes, and
"refused <status>" when the upgrade is refused. A second argument is a CA
file to trust for wss:// URIs. Used by
tests/runtime/websocket_python_test.cpp and websocket_gateway_test.cpp.
"""
import asyncio
import ssl
import sys

import websockets


async def main(uri: str, ca_file: str | None) -> int:
    # ping_interval=None: the client never pings; only the server's pings
    # (answered by the library) keep the connection judged alive.
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        ws = await websockets.connect(uri, ping_interval=None, ssl=context)
    except websockets.InvalidStatusCode as refused:
        print("refused", refused.status_code, flush=True)
        return 3
    print("open", flush=True)
    token = ws.response_headers.get("Lifeline-Resume-Token")
    if token:
        print("resume", token, flush=True)
    n = 0
    try:
        while True:
            await ws.send(f"message {n} é")
            print("echo", await ws.recv(), flush=True)
            n += 1
            await asyncio.sleep(0.1)
    except websockets.ConnectionClosed as closed:
        print("closed", closed.rcvd.code if closed.rcvd else "none", flush=True)
    finally:
        await ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
