import asyncio
import os
from urllib.parse import parse_qs, urlsplit

from http_server import HTTPServer

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    server = HTTPServer()
    wss = wsfast.WebSocketServer(no_server=True)

    @server.on("request")
    def request(request, respond):
        respond("200 OK", {"msg": "hello"})  # plain HTTP requests get a page

    @server.on("upgrade")
    def upgrade(request, transport, head):  # WebSocket upgrades on the same port
        wss.handle_upgrade(
            request, transport, head, lambda ws, _: wss.emit("connection", ws, request)
        )

    @wss.on("connection")
    def connection(ws, request):
        query = parse_qs(urlsplit(request.url).query)
        # You might use query["access_token"] to authenticate or share sessions,
        # or request.headers["cookie"].
        print("access token:", query.get("access_token"))

        @ws.on("message")
        def message(data, is_binary):
            print(f"received: {data}")

        ws.send("something")

    port = await server.listen(PORT)
    print(f"listening on port {port}")
    await asyncio.Event().wait()


asyncio.run(main())
