import asyncio
import os

import wsfast

URL = os.environ.get("WS_URL", "ws://localhost:8080/")


async def main():
    async with wsfast.connect(URL) as ws:
        await ws.send("hello")
        print("first reply:", await ws.recv())

        async for message in ws:  # ends when the server closes the connection normally
            print("received:", message)


asyncio.run(main())
