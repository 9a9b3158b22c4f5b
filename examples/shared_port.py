import asyncio
import json
import os
from urllib.parse import parse_qs, urlsplit

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    wss = wsfast.WebSocketServer(no_server=True)

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

    async def handle(reader, writer):
        request = await wsfast.WebSocketServer.read_request(reader, writer)
        if request.headers.get("upgrade", "").lower() == "websocket":
            wss.handle_upgrade(
                request, writer, reader, lambda ws, _: wss.emit("connection", ws, request)
            )
            return  # the WebSocket owns the connection now

        body = json.dumps({"msg": "hello"}).encode()  # plain HTTP requests get a page
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        writer.close()

    server = await asyncio.start_server(handle, port=PORT)
    print(f"listening on port {server.sockets[0].getsockname()[1]}")
    await server.serve_forever()


asyncio.run(main())
