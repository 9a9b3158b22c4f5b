import asyncio
import os

import wsfast

URL = os.environ.get("WS_URL", "ws://www.host.com/path")


async def main():
    ws = wsfast.WebSocket(URL)
    ws.on("error", lambda error: print("error:", error))

    # Sending before the connection is open raises at once, as ws throws.
    try:
        ws.send("something")
    except wsfast.WebSocketError as error:
        print("immediate error:", error)

    await ws.wait_open()

    # Errors can be detected in an optional callback. The callback is also the way of being
    # notified that the data has been handed to the socket.
    def ack(error):
        # None if the send has been completed, otherwise the error.
        print("ack:", error)

    ws.send("something", callback=ack)

    ws.close()
    await ws.wait_closed()

    # Once the connection is closed, sending reports the error to the callback...
    ws.send("something", callback=ack)

    # ...and to a coroutine that awaits the send.
    try:
        await ws.send("something")
    except wsfast.ConnectionClosed as error:
        print("closed:", error.code)

    await asyncio.sleep(0)  # let the last callback run


asyncio.run(main())
