import asyncio
import os

import wsfast

PORT = int(os.environ.get("PORT", "8080"))


async def main():
    wss = wsfast.WebSocketServer(
        port=PORT,
        per_message_deflate={
            "zlib_deflate_options": {
                # See zlib's defaults.
                "mem_level": 7,
                "level": 3,
            },
            # Other options settable:
            "client_no_context_takeover": True,  # Defaults to the negotiated value.
            "server_no_context_takeover": True,  # Defaults to the negotiated value.
            "server_max_window_bits": 10,  # Defaults to the negotiated value.
            # Below: the default value. Messages smaller than this many bytes are not
            # compressed when context takeover is disabled.
            "threshold": 1024,
        },
    )

    @wss.on("connection")
    def connection(ws, request):
        print("extensions:", ws.extensions)
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))

    await wss.wait_listening()
    print(f"listening on port {wss.address()[1]}")
    await wss.serve_forever()


asyncio.run(main())
