"""What the atheris harnesses of ``fuzz/`` found, kept as plain tests (no atheris needed).

Three parts: every seed of ``fuzz/corpus/`` replayed through its harness's ``TestOneInput`` (the
harnesses check their invariants without atheris, so a seed that stops holding fails here);
the inputs that broke a first version of a harness, replayed the same way; and the defects in
wsfast the fuzzing found, which stay fixed.
"""

from __future__ import annotations

import base64
import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from wsfast.exceptions import HandshakeError
from wsfast.handshake import ClientHandshake, HeadReader, accept_key
from wsfast.options import ClientOptions

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
CORPUS = FUZZ / "corpus"
# The harnesses that import a native module directly (differential against the fallback).
NATIVE = {"bufferutil": "wsfast_bufferutil", "utf8": "wsfast_utf8validate"}


def harness(name: str) -> ModuleType:
    """``fuzz/fuzz_<name>.py``, imported as a module (its ``main()`` only runs as a script)."""
    if name in NATIVE:
        pytest.importorskip(NATIVE[name])
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    return importlib.import_module(f"fuzz_{name}")


def test_every_harness_has_a_seed_corpus() -> None:
    names = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))
    assert names == sorted(p.name for p in CORPUS.iterdir())
    for name in names:
        seeds = list((CORPUS / name).iterdir())
        assert 3 <= len(seeds) and all(seed.stat().st_size < 4096 for seed in seeds), name


SEEDS = sorted(CORPUS.glob("*/*"))


@pytest.mark.parametrize("seed", SEEDS, ids=[f"{p.parent.name}/{p.name}" for p in SEEDS])
def test_seed_corpus(seed: Path) -> None:
    harness(seed.parent.name).TestOneInput(seed.read_bytes())


# Inputs that broke an invariant the harness stated too strongly (wsfast was right): kept so the
# corrected invariant keeps being exercised.
HARNESS_FIXES = [
    # An empty Sec-WebSocket-Extensions value parses to no offer (ws' extension.parse("")).
    pytest.param("headers", "", id="headers-empty-extensions"),
    # A request head over max_head_size is refused with 431 as soon as it is too large, before
    # a bare LF further on (400) is seen; fed whole, the LF is seen first.
    pytest.param(
        "handshake",
        base64.b64encode(b"\x04\xf0" + b"\xff" * 340 + b"\n").decode(),
        id="handshake-431-before-400",
    ),
    # A complete head whose request line is malformed is refused with 400 by .request().
    pytest.param(
        "handshake",
        "/8ew/yf//wAAAAD/DQoNCv8fAAAAAAAACP//DQr/Df8fAAAAAAAACP//DQr/DQr//wAAACE/DQoK",
        id="handshake-bad-request-line",
    ),
    # ws+unix:///s.sock:x has the request target "x": ws splits its path at ":" the same way.
    pytest.param("url", "tC2vtC46LzowNzc3Nzc4", id="url-unix-relative-target"),
    # The status-code defect below: the harness now meets HandshakeError, never ValueError.
    pytest.param(
        "handshake",
        "IiBIVFRQLzEuMSCzMDIgRm91buBkDQpMb2NhdGlvbjogd3M6LyMvZXhhbXBsZS5jb/kvb3RoZXINCg0K",
        id="handshake-status-superscript-digit",
    ),
    # The head completes in the first of two reads: what follows it is the rest of that read
    # plus the second read, which the harness had left out of the bytes after the head.
    pytest.param(
        "handshake",
        (
            "CIBHRVQgL2NoYXQgSFRUUC8xLjENCkhvc3Q6IGV4YW1wbGUuY29tDQpVcGdyYWRlOiB3ZWJzb2NrZXQNCkNvbm5l"
            "Y3Rpb246IGtlZXAtYWxpdmUsIFVwZ3JhZGUNClNlYy1XZWJTb2NrZXQtS2V5OiBkR2hsSUhOaGJYQnNaU0J1YjI1"
            "alpRPT0NClNlYy1XZWJTb2NrZXQtVmVyc2lvbjogMTMNClNlYzovL2V4YW1wbGUuY29tDQoNCoGCN/oqPV9pZ2lu"
            "OiBodHRwOi8vZXhhbXBsZS5jb20NOiBjaGF0LCBzdXBhY3JoZXQNClNlYy1XZWJTb2NrZXQtRXh0ZW5zaW9uczog"
            "cGVybWVzc2FnZS1kZWZsYXRlOyBjbGllbnRfbWF4X3c7bmRvd19iaXRzDQpPciBkR2hsSUhOaGJYQnNaU0J1YjI1"
            "alpRPT0NClNlYy1XZWJTb2NrZXQtVmVyc2lvbjogMTMNClNlYzogY2hhdCwgc3VwZXJjaGF0DQpTZWMtV2ViU29j"
            "a2V0LUV4dGVuc2lvbnM6IHBlcm1lc3NhZ2UtZGVmbGF0ZTsgY2xpZW50X21heF93O25kb3dfYml0cw0KT3JpZ2lu"
            "OiBodHRwOi8vZXhhbXBsZS5jb20NCg0KgYI3+io9X2lnaW46IGh0dHA6Ly9leGFtcGxlLmNvbQ0KDQqBgjf6Kj1f"
            "kw=="
        ),
        id="handshake-rest-spans-two-reads",
    ),
]


@pytest.mark.parametrize(("name", "data"), HARNESS_FIXES)
def test_harness_fixes(name: str, data: str) -> None:
    harness(name).TestOneInput(base64.b64decode(data))


# -- defects found in wsfast -------------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def client_reading(answer: bytes) -> ClientHandshake:
    client = ClientHandshake("ws://example.com/", ClientOptions(), key_factory=lambda: KEY)
    client.request(client.prepare_headers())
    client.receive_data(answer)
    return client


# fuzz_handshake in its 60 s run, client mode: "HTTP/1.1 \xb302 Foun\xe0d" (base64
# IiBIVFRQLzEuMSCzMDIgRm91buBkDQpMb2NhdGlvbjogd3M6LyMvZXhhbXBsZS5jb/kvb3RoZXINCg0K). Before the
# fix the ValueError escaped data_received: asyncio logged "Fatal error: protocol.data_received()
# call failed" with a traceback, and connect() failed with WS_ERR_HANDSHAKE_CLOSED.


@pytest.mark.parametrize("code", [b"\xb302", b"1\xb20", b"10\xb9"])
def test_status_code_with_superscript_digit_is_invalid_response(code: bytes) -> None:
    reader = HeadReader()
    assert reader.feed(b"HTTP/1.1 " + code + b" Found\r\n\r\n")
    with pytest.raises(HandshakeError):
        reader.response()


def test_client_fails_on_status_code_with_superscript_digit() -> None:
    client = client_reading(b"HTTP/1.1 \xb302 Found\r\nLocation: ws://example.com/x\r\n\r\n")
    assert client.state == ClientHandshake.FAILED
    assert client.error is not None and client.error.code == "WS_ERR_INVALID_RESPONSE"


@pytest.mark.parametrize("reason", [b"Switching\rProtocols", b"Switching\x00Protocols", b"\x7f"])
def test_status_line_with_control_characters_is_refused(reason: bytes) -> None:
    client = client_reading(
        b"HTTP/1.1 101 " + reason + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(KEY).encode() + b"\r\n\r\n"
    )
    assert client.state == ClientHandshake.FAILED
    assert client.error is not None and client.error.code == "WS_ERR_INVALID_RESPONSE"
