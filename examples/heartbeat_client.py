import asyncio
import os

import wsfast

URL = os.environ.get("WS_URL", "wss://websocket-echo.com/")
INTERVAL = float(os.environ.get("HEARTBEAT_INTERVAL", "30"))  # the server's ping interval


async def main():
    client = wsfast.WebSocket(URL)
    loop = asyncio.get_running_loop()
    ping_timeout = None

    def heartbeat(*args):
        nonlocal ping_timeout
        if ping_timeout is not None:
            ping_timeout.cancel()

        # terminate() destroys the connection at once, where close() would wait for the close
        # timer. The delay is the server's ping interval plus a conservative allowance for
        # latency.
        ping_timeout = loop.call_later(INTERVAL + 1, client.terminate)

    client.on("error", print)
    client.on("open", heartbeat)
    client.on("ping", heartbeat)

    @client.on("close")
    def clear(code, reason):
        ping_timeout.cancel()
        print("closed:", code)

    await client.wait_closed()


asyncio.run(main())
