import asyncio
import os
from urllib.parse import urlsplit

from http_server import HTTPServer

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    server = HTTPServer()
    wss1 = wsfast.WebSocketServer(no_server=True)
    wss2 = wsfast.WebSocketServer(no_server=True)

    @wss1.on("connection")
    def connection1(ws, request):
        ws.on("error", print)
        ws.send("this is /foo")

    @wss2.on("connection")
    def connection2(ws, request):
        ws.on("error", print)
        ws.send("this is /bar")

    @server.on("upgrade")
    def upgrade(request, transport, head):
        pathname = urlsplit(request.url).path

        if pathname == "/foo":
            wss1.handle_upgrade(
                request, transport, head, lambda ws, _: wss1.emit("connection", ws, request)
            )
        elif pathname == "/bar":
            wss2.handle_upgrade(
                request, transport, head, lambda ws, _: wss2.emit("connection", ws, request)
            )
        else:
            transport.abort()  # Node's socket.destroy()

    port = await server.listen(PORT)
    print(f"listening on port {port}")
    await asyncio.Event().wait()


asyncio.run(main())
