"""Fuzz permessage-deflate decompression with a limit: ``PerMessageDeflate.decompress``.

Input: a flags byte (bit 0 server, bits 1-2 the negotiated parameters, bits 3-5 the limit),
then frames: a header byte (bit 7 fin, low 7 bits a length unit), a length byte, then that many
payload bytes (length = unit * 256 + byte, so a frame reaches 32 KiB).

Invariants, checked against a plain ``zlib.decompressobj`` with the same window and no limit:
``WebSocketError`` is the only exception, 1009 (``WS_ERR_UNSUPPORTED_MESSAGE_LENGTH``) or 1007
(``WS_ERR_INVALID_COMPRESSED_DATA``); a message's output never passes the limit; 1009 exactly
when zlib's output passes the limit (or zlib fails further on); 1007 only when zlib fails; the
same bytes otherwise.
"""

from __future__ import annotations

import zlib

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast import extension
    from wsfast.exceptions import WebSocketError
    from wsfast.permessage_deflate import TRAILER, PerMessageDeflate

OFFERS = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits=8; server_max_window_bits=8",
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
]
LIMITS = [1, 100, 1024, 4096, 65536, 65537, 1 << 20, 0]


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    is_server = bool(flags & 1)
    offer = extension.parse(OFFERS[(flags >> 1) & 3])["permessage-deflate"]
    limit = LIMITS[(flags >> 3) & 7]
    pmd = PerMessageDeflate({}, is_server=is_server, max_payload=limit)
    params = pmd.accept(offer)  # type: ignore[arg-type]
    peer = "client" if is_server else "server"
    wbits = params.get(f"{peer}_max_window_bits")
    wbits = 15 if wbits is None or wbits is True else int(wbits)
    takeover = not params.get(f"{peer}_no_context_takeover")

    reference = zlib.decompressobj(-wbits)
    total = 0  # the reference's output for the message so far
    while inp.left:
        head = inp.byte()
        fin = bool(head & 0x80)
        frame = inp.take(((head & 0x7F) << 8) | inp.byte())
        try:
            expected: bytes | None = reference.decompress(frame + TRAILER if fin else frame)
        except zlib.error:
            expected = None
        try:
            out = pmd.decompress(frame, fin)
        except WebSocketError as exc:
            if exc.status_code == 1009:
                assert exc.code == "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", exc.code
                assert limit and (expected is None or total + len(expected) > limit), (total, limit)
            else:
                assert (exc.code, exc.status_code) == ("WS_ERR_INVALID_COMPRESSED_DATA", 1007)
                assert expected is None
            return
        assert expected is not None, "zlib refused what decompress() accepted"
        assert out == expected, (len(out), len(expected))
        total += len(out)
        assert not limit or total <= limit, (total, limit)
        if fin:
            total = 0
            if reference.eof or not takeover:
                reference = zlib.decompressobj(-wbits)


if __name__ == "__main__":
    main(TestOneInput)
