#!/usr/bin/python3
"""ws_backend: a WebSocket server for the integration tests, on Debian's
python3-websockets (a real implementation of RFC 6455 behind cutoverd).

    ws_backend.py NAME PORT

Listens on 127.0.0.1:PORT. A WebSocket connection (any path) echoes every
message, text or binary, as it came (up to 4 MiB), and answers the text
message "who" with NAME. A plain HTTP request is answered 200 with the body
"NAME\\n" and "X-Backend: NAME", except /fail on a server named "new",
which is answered 500 (the failure that makes cutoverd roll new back).
"""
import asyncio
import http
import sys

import websockets


NAME = sys.argv[1]
PORT = int(sys.argv[2])


async def handler(ws, path=None):
    try:
        async for msg in ws:
            await ws.send(NAME if msg == "who" else msg)
    except websockets.ConnectionClosed:
        pass


async def process_request(path, headers):
    if headers.get("Upgrade", "").lower() == "websocket":
        return None
    body = (NAME + "\n").encode()
    status = http.HTTPStatus.OK
    if path.startswith("/fail") and NAME == "new":
        status = http.HTTPStatus.INTERNAL_SERVER_ERROR
    return status, [("X-Backend", NAME), ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(body))), ("Connection", "close")], body


async def main():
    async with websockets.serve(handler, "127.0.0.1", PORT, process_request=process_request,
                                max_size=4 << 20, ping_interval=None):
        print("listening", flush=True)
        await asyncio.Future()


asyncio.run(main())
