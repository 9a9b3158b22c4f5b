import asyncio
import os
import ssl

from http_server import HTTPServer

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        os.environ.get("CERT_FILE", "/path/to/cert.pem"),
        os.environ.get("KEY_FILE", "/path/to/key.pem"),
    )
    server = HTTPServer()
    wss = wsfast.WebSocketServer(no_server=True)  # ws' { server } option: see below

    @server.on("upgrade")
    def upgrade(request, transport, head):
        wss.handle_upgrade(
            request, transport, head, lambda ws, _: wss.emit("connection", ws, request)
        )

    @wss.on("connection")
    def connection(ws, request):
        ws.on("error", print)

        @ws.on("message")
        def message(data, is_binary):
            print(f"received: {data}")

        ws.send("something")

    port = await server.listen(PORT, ssl=context)
    print(f"listening on port {port}")
    await asyncio.Event().wait()


asyncio.run(main())
