"""A chat served by two worker processes on one port, joined through Redis.

Every client subscribes to the "chat" topic; a message from a client on either worker is
published to the topic and reaches every client on both (and on any other server using the
same Redis). Run redis-server, then this, then several `wsfast connect ws://127.0.0.1:8080`.
"""

import os

import wsfast
from wsfast.workers import listen, run_workers, stopped

PORT = int(os.environ.get("PORT", "8080"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def worker(sock, index, ready):
    wss = wsfast.WebSocketServer(sock=sock, backplane=REDIS_URL)
    wss.on("backplane", lambda connected, error: print(f"worker {index}: redis up: {connected}"))

    @wss.on("connection")
    def connection(ws, request):
        wss.subscribe(ws, "chat")
        ws.send(f"welcome to worker {index}")

        @ws.on("message")
        def message(data, is_binary):
            wss.publish("chat", data, binary=is_binary)

    await wss.wait_listening()
    ready()
    await stopped()  # Ctrl+C or SIGTERM: say goodbye to this worker's clients
    for ws in list(wss.clients):
        ws.close(1001)
    await wss.close()


def on_ready():
    print(f"listening on port {PORT}", flush=True)


raise SystemExit(run_workers(worker, 2, listen("127.0.0.1", PORT), on_ready=on_ready))
