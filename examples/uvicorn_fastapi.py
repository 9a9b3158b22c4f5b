"""A FastAPI application served by uvicorn with wsfast as its WebSocket engine.

    uvicorn uvicorn_fastapi:app --ws wsfast.uvicorn:WebSocketProtocol

or run this file (``PORT`` picks the port; Ctrl+C closes open connections with 1012).
"""

import os

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status

app = FastAPI()


@app.websocket("/rooms/{room}")
async def room(websocket: WebSocket, room: str):
    if websocket.query_params.get("token") != "secret":
        # Before accept(): uvicorn answers the handshake with 403.
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    await websocket.accept(
        subprotocol="chat" if "chat" in websocket.scope["subprotocols"] else None
    )
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"[{room}] {text}")
    except WebSocketDisconnect as exc:
        print(f"{room}: disconnected with {exc.code}", flush=True)


if __name__ == "__main__":
    import uvicorn

    port = int(os.environ.get("PORT", "8000"))
    print(f"listening on port {port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, ws="wsfast.uvicorn:WebSocketProtocol")
