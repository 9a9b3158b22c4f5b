import asyncio
import os
from urllib.parse import parse_qs, urlsplit

import wsfast

PORT = int(os.environ.get("PORT", "8080"))
USERS = {"secret-token": "alice"}


async def authenticate(request):
    """Your own logic goes here; this one takes a token from the query string."""
    token = parse_qs(urlsplit(request.url).query).get("token", [""])[0]
    return USERS.get(token)


async def main():
    wss = wsfast.WebSocketServer(no_server=True)

    @wss.on("connection")
    def connection(ws, request, client):
        ws.on("error", print)

        @ws.on("message")
        def message(data, is_binary):
            print(f"Received message {data} from user {client}")

    async def upgrade(reader, writer):
        request = await wsfast.WebSocketServer.read_request(reader, writer)

        client = await authenticate(request)
        if client is None:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            writer.close()
            return

        wss.handle_upgrade(
            request, writer, reader, lambda ws, _: wss.emit("connection", ws, request, client)
        )

    server = await asyncio.start_server(upgrade, port=PORT)
    print(f"listening on port {server.sockets[0].getsockname()[1]}")
    await server.serve_forever()


asyncio.run(main())
