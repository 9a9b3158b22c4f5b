import asyncio
import os

import wsfast

URL = os.environ.get("WS_URL", "ws://www.host.com/path")


async def main():
    ws = wsfast.WebSocket(URL)

    ws.on("error", print)

    @ws.on("open")
    def open():
        ws.send("something")

    @ws.on("message")
    def message(data, is_binary):
        print(f"received: {data}")

    await ws.wait_closed()


asyncio.run(main())
