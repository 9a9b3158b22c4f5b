import asyncio
import os

import wsfast

URL = os.environ.get("WS_URL", "ws://www.host.com/path")


async def main():
    ws = wsfast.WebSocket(URL, per_message_deflate=False)

    await ws.wait_open()
    print(f"extensions: {ws.extensions!r}")
    ws.close()
    await ws.wait_closed()


asyncio.run(main())
