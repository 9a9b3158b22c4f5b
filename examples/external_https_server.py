import asyncio
import os
import ssl

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        os.environ.get("CERT_FILE", "/path/to/cert.pem"),
        os.environ.get("KEY_FILE", "/path/to/key.pem"),
    )
    wss = wsfast.WebSocketServer(no_server=True)  # ws' { server } option: see above

    @wss.on("connection")
    def connection(ws, request):
        ws.on("error", print)

        @ws.on("message")
        def message(data, is_binary):
            print(f"received: {data}")

        ws.send("something")

    async def handle(reader, writer):  # any asyncio server: here asyncio's own
        request = await wsfast.WebSocketServer.read_request(reader, writer)
        wss.handle_upgrade(
            request, writer, reader, lambda ws, _: wss.emit("connection", ws, request)
        )

    server = await asyncio.start_server(handle, port=PORT, ssl=context)
    print(f"listening on port {server.sockets[0].getsockname()[1]}")
    await server.serve_forever()


asyncio.run(main())
