import asyncio
import os

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    wss = wsfast.WebSocketServer(port=PORT)

    @wss.on("connection")
    def connection(ws, request):
        ip = request.remote_address[0]  # from the socket: ws' req.socket.remoteAddress
        print("remote address:", ip)

        # Behind a proxy like NGINX, the de-facto standard is the X-Forwarded-For header.
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            ip = forwarded.split(",")[0].strip()
            print("forwarded for:", ip)

        ws.on("error", print)
        ws.send(ip)

    await wss.wait_listening()
    print(f"listening on port {wss.address()[1]}")
    await wss.serve_forever()


asyncio.run(main())
