"""A WebSocket echo server and its client (Debian's python3-websockets).

`ws_echo.py PORT` serves: the handshake on any path, then every message is
sent back. `ws_echo.py PORT --talk N` connects to /ws, sends N messages (text
that reads like an HTTP request, and random binary), checks each echo and
prints "echoed N".
"""
import asyncio
import os
import sys

import websockets


async def echo(socket, path=None):
    async for message in socket:
        await socket.send(message)


async def serve(port):
    async with websockets.serve(echo, "127.0.0.1", port):
        print("listening", flush=True)
        await asyncio.Future()


async def talk(port, count):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as socket:
        for i in range(count):
            if i % 2:
                message = os.urandom(20 + 37 * i)
            else:
                message = "GET /inside-a-frame HTTP/1.1\r\nHost: x\r\n\r\n"
            await socket.send(message)
            if await socket.recv() != message:
                sys.exit(f"message {i} came back changed")
    print("echoed", count, flush=True)


if __name__ == "__main__":
    port = int(sys.argv[1])
    if sys.argv[2:3] == ["--talk"]:
        asyncio.run(talk(port, int(sys.argv[3])))
    else:
        asyncio.run(serve(port))
