"""Write the seed corpus, ``fuzz/corpus/<harness>/<name>`` (run from the repository root:
``python fuzz/make_corpus.py``). Each seed is a valid input of its harness's format: the option
bytes the harness reads first, then wire bytes built with wsfast's own sender and zlib."""

from __future__ import annotations

import zlib
from pathlib import Path

from wsfast.sender import frame

ROOT = Path(__file__).resolve().parent / "corpus"
KEY = b"\x37\xfa\x21\x3d"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def deflate(data: bytes, wbits: int = 15) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def f(data: bytes, opcode: int, masked: bool, **kw: object) -> bytes:
    return bytes(frame(data, opcode, mask=KEY if masked else None, **kw))  # type: ignore[arg-type]


def receiver() -> dict[str, bytes]:
    # flags (1 server, 2 deflate, 4/8 binary_type, 16 pause, 32 skip UTF-8, 64 max_fragments),
    # cut count, cuts, wire
    text = "héllo wörld €".encode()
    return {
        "text_client": b"\x00\x00" + f(b"hello", 1, False),
        "binary_server_masked": b"\x01\x00" + f(bytes(range(40)), 2, True),
        "fragmented_text_ping_close": b"\x11\x03\x20\x60\xa0"
        + f(text[:5], 1, True, fin=False)
        + f(b"p", 9, True)
        + f(text[5:], 0, True)
        + f(b"\x03\xe8bye", 8, True),
        "compressed_text_client": b"\x02\x01\x80"
        + f(deflate(b"hello hello hello hello"), 1, False, rsv1=True),
        "compressed_fragments_server": b"\x0b\x02\x40\xc0"
        + f(deflate(bytes(300))[:3], 2, True, fin=False, rsv1=True)
        + f(deflate(bytes(300))[3:], 0, True),
        "len16_bytearray_pause": b"\x14\x01\x10"
        + f(bytes(300), 2, False)
        + f(b"", 10, False)
        + f(b"\xf0\x9f\x98\x80", 1, False),
        "len64_and_bad_utf8": b"\x00\x01\x80"
        + b"\x82\x7f"
        + (70000).to_bytes(8, "big")[:8]
        + b"\x81\x02\xc3\x28",
    }


def protocol() -> dict[str, bytes]:
    # flags (1 server, 2 deflate, 4 no auto_pong, 8 pong cap, 16/32 binary_type); ops:
    # 0-2 peer bytes (length byte + bytes), 3 EOF, 4 close (table index), 5/6 send (flags byte),
    # 7 ping/pong (length byte, which byte), 8 terminate, 9 expire, 10 connection_lost,
    # 11 auto_pongs_flushed
    def feed(data: bytes) -> bytes:
        return bytes([0, len(data)]) + data

    return {
        "peer_closes": b"\x01" + feed(f(b"\x03\xe8", 8, True)) + b"\x04\x01\x0a",
        "we_close_first": b"\x00\x04\x01" + feed(f(b"\x03\xe8", 8, False)) + b"\x03\x09\x0a",
        "ping_cap": b"\x09" + feed(f(b"a", 9, True) * 3) + b"\x0b" + feed(f(b"b", 9, True)),
        "send_fragments_deflate": b"\x02\x05\x41\x06\x00\x06\x81\x07\x05\x00\x04\x02\x07\x00\x01",
        "protocol_error": b"\x01" + feed(b"\x83\x80" + KEY) + b"\x05\x01\x04\x01\x08",
        "terminate": b"\x00\x05\x02\x08\x05\x01\x09\x0a\x04\x00",
    }


def handshake() -> dict[str, bytes]:
    # flags (bits 0-1 mode: 0 server, 1 response head, 2 client), cut, bytes from the peer
    request = (
        "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "Origin: http://example.com\r\n\r\n"
    ).encode() + f(b"hi", 1, True)
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {WS_ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
    ).encode() + f(b"hi", 1, False)
    return {
        "request_upgrade_deflate": b"\x08\x80" + request,
        "request_path_port_mode": b"\xc0\x40" + request,
        "request_plain_get": b"\x40\x20GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "response_head": b"\x01\x80HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        "client_101": b"\x0a\x60" + response,
        "client_redirect": b"\x22\x20HTTP/1.1 302 Found\r\nLocation: ws://example.com/other\r\n\r\n",
        "client_404_chunked": b"\x06\x50HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n5\r\nhello\r\n0\r\n\r\n",
    }


def headers() -> dict[str, bytes]:
    # selector (bit 0 subprotocol parser, bit 1 UTF-8), header value
    return {
        "deflate_offer": b"\x00permessage-deflate; client_max_window_bits",
        "deflate_offers": b"\x00permessage-deflate; server_max_window_bits=10; "
        b"client_no_context_takeover, permessage-deflate",
        "quoted_params": b'\x00foo; bar="baz"; x, y; z=1',
        "protocols": b"\x01chat, superchat",
        "protocol_token": b"\x01v1.json.api",
    }


def url() -> dict[str, bytes]:
    # selector (bit 0 UTF-8, bit 1 resolve against a base, bits 2-4 prefix/base index), text
    return {
        "plain": b"\x00ws://example.com/chat?x=1",
        "userinfo_ipv6": b"\x00wss://user:pa%20ss@[::1]:8443/a b",
        "ipv4_short": b"\x00ws://127.1/",
        "idna": "\x01http://bücher.example/é".encode(),
        "unix": b"\x00ws+unix:///tmp/s.sock:/path?q",
        "resolve_relative": b"\x02../other?x",
        "resolve_absolute": b"\x06wss://elsewhere:9000/",
    }


def deflate_corpus() -> dict[str, bytes]:
    # flags (bit 0 server, bits 1-2 offer, bits 3-5 limit index), frames: head byte (fin,
    # length unit), length byte, payload
    def fr(payload: bytes, fin: bool = True) -> bytes:
        return bytes([(0x80 if fin else 0) | (len(payload) >> 8), len(payload) & 255]) + payload

    text = deflate(b"hello deflate " * 40)
    bomb = deflate(bytes(1 << 20))
    return {
        "text": b"\x10" + fr(text),
        "text_two_frames": b"\x21" + fr(text[:7], False) + fr(text[7:]),
        "bomb_1mib_limit_64k": b"\x20" + fr(bomb),
        "window8": b"\x12" + fr(deflate(b"abcabcabc" * 30, 9)),
        "no_context_takeover": b"\x14" + fr(text) + fr(text),
        "final_block_padding": b"\x10"
        + fr(zlib.compressobj(6, zlib.DEFLATED, -15).compress(b"x") + b"\x03\x00" + b"\x00"),
    }


def bufferutil() -> dict[str, bytes]:
    # flags, key length, key, offset (+8), length (8 * byte + low 3 bits - 4), slack, data
    data = bytes(range(256)) * 2
    return {
        "small": b"\x00\x04" + KEY + b"\x08\x01\x04\x00" + data[:12],
        "simd_sizes_sse2": b"\x01\x04" + KEY + b"\x09\x28\x07\x03" + data[:330],
        "simd_sizes_avx2_view": b"\x12\x04" + KEY + b"\x0b\x3f\x06\x05" + data,
        "short_key": b"\x08\x03\x01\x02\x03\x08\x02\x04\x00" + data[:20],
        "readonly_out": b"\x18\x04" + KEY + b"\x08\x02\x04\x00" + data[:20],
    }


def utf8() -> dict[str, bytes]:
    # flags (kernel), cut count, cuts, text
    return {
        "ascii": b"\x00\x00" + b"hello world " * 8,
        "multibyte_cut": b"\x01\x03\x30\x70\xb0" + "héllo €𝄞 ✓ wörld".encode() * 4,
        "surrogate": b"\x00\x01\x40" + b"abc\xed\xa0\x80def",
        "overlong": b"\x01\x00" + b"\xc0\xaf" + b"a" * 40,
        "truncated": b"\x00\x01\x80" + "€".encode() * 20 + b"\xf0\x9f",
        "above_max": b"\x01\x00" + b"\xf4\x90\x80\x80" + "é".encode() * 40,
    }


CORPORA = {
    "receiver": receiver,
    "protocol": protocol,
    "handshake": handshake,
    "headers": headers,
    "url": url,
    "deflate": deflate_corpus,
    "bufferutil": bufferutil,
    "utf8": utf8,
}


def main() -> None:
    for harness, make in CORPORA.items():
        directory = ROOT / harness
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in make().items():
            assert len(data) < 4096, (harness, name, len(data))
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
