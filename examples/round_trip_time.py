import asyncio
import os
import time

import wsfast

URL = os.environ.get("WS_URL", "wss://websocket-echo.com/")


def now_ms():
    return time.time() * 1000


async def main():
    ws = wsfast.WebSocket(URL)
    loop = asyncio.get_running_loop()

    ws.on("error", print)

    @ws.on("open")
    def open():
        print("connected")
        ws.send(str(now_ms()))

    @ws.on("close")
    def close(code, reason):
        print("disconnected")

    @ws.on("message")
    def message(data, is_binary):
        print(f"Round-trip time: {now_ms() - float(data):.3f} ms")

        loop.call_later(0.5, lambda: ws.send(str(now_ms())))

    await ws.wait_closed()


asyncio.run(main())
