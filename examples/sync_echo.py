import os
import threading

from wsfast.sync import connect, serve

PORT = int(os.environ.get("PORT", "0"))


def echo(ws):
    # One thread per connection: blocking calls are fine here.
    for message in ws:
        ws.send(message)


with serve(echo, "127.0.0.1", PORT) as server:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.address()
    print(f"listening on port {port}")

    with connect(f"ws://{host}:{port}/") as ws:
        ws.send("hello")
        print("received:", ws.recv(timeout=5.0))
        ws.send(b"\x00\x01")
        print("received:", ws.recv(timeout=5.0))
    print("closed with", ws.close_code)
