import asyncio
import os

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    wss = wsfast.WebSocketServer(port=PORT)

    @wss.on("connection")
    def connection(ws, request):
        ws.on("error", print)

        @ws.on("message")
        def message(data, is_binary):
            print(f"received: {data}")

        ws.send("something")

    await wss.wait_listening()
    print(f"listening on port {wss.address()[1]}")
    await wss.serve_forever()


asyncio.run(main())
