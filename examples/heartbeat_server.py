import asyncio
import os

import wsfast

PORT = int(os.environ.get("PORT", "8080"))
INTERVAL = float(os.environ.get("HEARTBEAT_INTERVAL", "30"))  # seconds, not ws' milliseconds


async def main():
    wss = wsfast.WebSocketServer(port=PORT)

    @wss.on("connection")
    def connection(ws, request):
        ws.is_alive = True
        ws.on("error", print)

        @ws.on("pong")
        def heartbeat(data):
            ws.is_alive = True

    async def ping_all():
        while True:
            await asyncio.sleep(INTERVAL)
            for ws in list(wss.clients):
                if not ws.is_alive:
                    print("terminating a broken connection")
                    ws.terminate()
                    continue

                ws.is_alive = False
                ws.ping()

    interval = asyncio.create_task(ping_all())
    wss.on("close", lambda: interval.cancel())

    await wss.wait_listening()
    print(f"listening on port {wss.address()[1]}")
    await wss.serve_forever()


asyncio.run(main())
