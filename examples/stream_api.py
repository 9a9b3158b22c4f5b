import asyncio
import os
import sys

import wsfast

URL = os.environ.get("WS_URL", "wss://websocket-echo.com/")


async def main():
    ws = wsfast.WebSocket(URL)
    reader, writer = wsfast.create_websocket_stream(ws)
    loop = asyncio.get_running_loop()

    async def pipe_to_stdout():
        while data := await reader.read(65536):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    async def pipe_from_stdin():
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := await stdin.readline():
            writer.write(line)
            await writer.drain()
        writer.close()  # ends the stream: the closing handshake starts

    try:
        await asyncio.gather(pipe_to_stdout(), pipe_from_stdin())
    except Exception as error:
        print(error, file=sys.stderr)


asyncio.run(main())
