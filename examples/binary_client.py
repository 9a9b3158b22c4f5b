import asyncio
import os
from array import array

import wsfast

URL = os.environ.get("WS_URL", "ws://www.host.com/path")


async def main():
    ws = wsfast.WebSocket(URL)

    ws.on("error", print)

    @ws.on("open")
    def open():
        floats = array("f", (i / 2 for i in range(5)))  # JavaScript's Float32Array(5)

        ws.send(floats.tobytes())  # bytes, bytearray and memoryview are sent as binary

    await ws.wait_closed()


asyncio.run(main())
