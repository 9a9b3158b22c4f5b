import asyncio
import os
from urllib.parse import urlsplit

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
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

    async def upgrade(reader, writer):
        request = await wsfast.WebSocketServer.read_request(reader, writer)
        pathname = urlsplit(request.url).path

        if pathname == "/foo":
            wss1.handle_upgrade(
                request, writer, reader, lambda ws, _: wss1.emit("connection", ws, request)
            )
        elif pathname == "/bar":
            wss2.handle_upgrade(
                request, writer, reader, lambda ws, _: wss2.emit("connection", ws, request)
            )
        else:
            writer.transport.abort()  # Node's socket.destroy()

    server = await asyncio.start_server(upgrade, port=PORT)
    print(f"listening on port {server.sockets[0].getsockname()[1]}")
    await server.serve_forever()


asyncio.run(main())
