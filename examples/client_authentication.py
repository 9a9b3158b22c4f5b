import asyncio
import os
from urllib.parse import parse_qs, urlsplit

from http_server import HTTPServer

import wsfast

PORT = int(os.environ.get("PORT", "8080"))
USERS = {"secret-token": "alice"}


async def authenticate(request):
    """Your own logic goes here; this one takes a token from the query string."""
    token = parse_qs(urlsplit(request.url).query).get("token", [""])[0]
    return USERS.get(token)


async def main():
    server = HTTPServer()
    wss = wsfast.WebSocketServer(no_server=True)

    @wss.on("connection")
    def connection(ws, request, client):
        ws.on("error", print)

        @ws.on("message")
        def message(data, is_binary):
            print(f"Received message {data} from user {client}")

    @server.on("upgrade")
    async def upgrade(request, transport, head):
        client = await authenticate(request)
        if client is None:
            transport.write(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            transport.close()
            return

        wss.handle_upgrade(
            request, transport, head, lambda ws, req: wss.emit("connection", ws, req, client)
        )

    port = await server.listen(PORT)
    print(f"listening on port {port}")
    await asyncio.Event().wait()


asyncio.run(main())
