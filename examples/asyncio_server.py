import asyncio
import os

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def echo(ws, request):
    async for message in ws:
        await ws.send(message)
    # The connection is closed (1000) when the handler returns.


async def main():
    async with wsfast.serve(echo, None, PORT) as server:
        print(f"listening on port {server.address()[1]}")
        await server.serve_forever()


asyncio.run(main())
