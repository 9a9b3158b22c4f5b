"""The permessage-deflate extension, RFC 7692 (the twin of ws' ``lib/permessage-deflate.js``).

Negotiation follows ws: the client offers its options (``client_max_window_bits`` bare by
default), the server takes the first offer it can accept and answers with its own options, the
client checks the answer against what it offered. Compression is sans-I/O and synchronous:
``compress`` and ``decompress`` take the payload of one frame and return bytes.

Divergences from ws, each because ws inherits a JavaScript or Node behaviour:

- Window-bits values must be the decimal integers ``8`` to ``15`` without leading zeros, as
  RFC 7692 section 7.1.2.1 writes; ws coerces with ``+value`` and so also accepts ``010``,
  ``0xa``, ``1e1`` or ``+10``.
- ``server_max_window_bits=True`` in the client options is not offered as a bare parameter (ws
  sends it bare, which every server, ws included, must refuse).
- ``max_payload`` bounds the inflated size of a whole message, across its frames; ws bounds the
  output of each frame and lets the receiver check the total afterwards.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

from .exceptions import WebSocketError

__all__ = ["PerMessageDeflate", "Params", "TRAILER", "deflate_message", "ZLIB_BACKEND"]


def _load_zlib() -> tuple[Any, str]:
    """The zlib module to deflate and inflate with, and its name and version for people.

    zlib-ng (the ``zlib-ng`` distribution from PyPI, part of ``wsfast[speedups]``) has the
    standard module's API and makes the same raw deflate streams for every window RFC 7692
    allows; it refuses a compressor window of 8 as zlib does (see ``_zlib_window``). On text it
    deflated 1 MiB at level 6 in 13.1 ms against zlib 1.2.13's 22.6 ms and inflated it in 2.0
    against 4.7 ms. ``WSFAST_NO_ZLIB_NG`` (any non-empty value) keeps the standard module.
    """
    if not os.environ.get("WSFAST_NO_ZLIB_NG"):
        try:
            from zlib_ng import zlib_ng
        except ImportError:
            pass
        else:
            return zlib_ng, f"zlib-ng {getattr(zlib_ng, 'ZLIBNG_VERSION', '?')}"
    return zlib, f"zlib {zlib.ZLIB_RUNTIME_VERSION}"


_zlib, ZLIB_BACKEND = _load_zlib()
# The standard module's error and the backend's (the same class when the backend is zlib).
_ZLIB_ERRORS = (zlib.error, _zlib.error)

# RFC 7692 section 7.2.1: a sync flush ends with an empty stored block, 00 00 ff ff, which the
# sender removes and the receiver appends again before inflating.
TRAILER = b"\x00\x00\xff\xff"

_DEFAULT_WINDOW_BITS = 15
_DEFAULT_MEM_LEVEL = 8

# Compression level: ws passes Node's default, Z_DEFAULT_COMPRESSION (6). Measured with
# benchmarks/bench_deflate_core.py (CPython 3.11, zlib 1.2.13, 2 vCPU, context takeover, sync
# flush, distinct JSON-like messages), MB/s of input and output/input size:
#   text 1 KiB:   level 1  91 MB/s 26.5%   level 6  42 MB/s 18.4%   level 9   8 MB/s 17.5%
#   text 64 KiB:  level 1 171 MB/s 23.7%   level 6  57 MB/s 15.8%   level 9   9 MB/s 14.9%
#   text 1 MiB:   level 1 175 MB/s 23.7%   level 6  57 MB/s 15.8%   level 9   9 MB/s 14.9%
#   random 1 MiB: level 1  65 MB/s 100%    level 6  60 MB/s 100%    level 9  61 MB/s 100%
# Level 1 is 3x faster on text for 1.5x the bytes, a trade-off rather than a clear win, so the
# default stays ws' (same ratio on the wire as ws); ``level=1`` is the option for CPU-bound
# servers. memLevel 9 instead of 8 changed the speed on text by -4% and on random by +14%, the
# size by nothing: 8 (ws' and zlib's default) stays.
_DEFAULT_LEVEL = zlib.Z_DEFAULT_COMPRESSION

# Output asked of zlib per call while a max_payload applies. A bomb is refused once its output
# passes the limit, so the memory held is the allowance plus one step, never the inflated
# message; a single call of the whole allowance would hold about twice the allowance, because
# CPython assembles the result from blocks and copies them into one bytes object at the end.
_INFLATE_STEP = 256 * 1024

# Up to this size the trailer is appended with a copy, one zlib call instead of two: a 1 KiB text
# message inflated in 3.43 us instead of 3.82 us (max_payload set), 3.05 instead of 3.28 (none);
# at 8 KiB the gain is 0.5 us of 29. Beyond it a second call is cheaper than copying the payload.
_JOIN_TRAILER_MAX = 16 * 1024

# RFC 7692 section 7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15".
_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])\Z")

_PARAMS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)

Params: TypeAlias = dict[str, int | Literal[True]]
"""Negotiated parameters: window bits as ints, the other flags as ``True``."""


def _number(value: object) -> int | None:
    # ws tests ``typeof x === 'number'``; a Python bool is an int and must not count.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _js(value: object) -> str:
    # ws' messages interpolate JavaScript values: ``true``, not ``True``.
    return "true" if value is True else str(value)


def _zlib_window(bits: object, compressing: bool) -> int:
    """The zlib window for negotiated ``bits`` (absent or ``True`` means 15).

    zlib refuses a raw deflate window of 8: ``compressobj(wbits=-8)`` raises "Invalid
    initialization option" (zlib 1.2.13), and since zlib 1.2.9 deflateInit2 itself turns 8 into
    9, which is what Node, hence ws, compresses with. That is safe for a peer inflating with 8
    bits: deflate never emits a distance beyond ``w_size - MIN_LOOKAHEAD`` = 512 - 262 = 250
    bytes, within the 256-byte window (tests/test_permessage_deflate.py feeds our 9-bit output
    to ``decompressobj(-8)`` a byte at a time, and shows the same inflater refusing a 15-bit
    stream; ``test_compression_interoperates_with_ws`` has ws 8.23 on Node 20, zlib 1.3.1,
    inflate our output with windowBits 8 and us inflate its). Inflating with 8 bits works in
    zlib, so the inflater keeps the negotiated value.
    """
    value = _number(bits)
    if value is None:
        return _DEFAULT_WINDOW_BITS
    return 9 if compressing and value == 8 else value


def deflate_message(data: bytes | bytearray | memoryview, key: tuple[int, int, int, int]) -> bytes:
    """The payload of one whole compressed message, from a fresh compressor (no context
    takeover): the same bytes :meth:`PerMessageDeflate.compress` gives a connection whose
    :attr:`~PerMessageDeflate.message_key` is ``key``."""
    wbits, level, mem_level, strategy = key
    deflate = _zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level, strategy)
    head: bytes = deflate.compress(data)
    tail: bytes = deflate.flush(zlib.Z_SYNC_FLUSH)[:-4]  # RFC 7692 7.2.1
    return head + tail if head else tail


class PerMessageDeflate:
    """permessage-deflate for one connection: negotiation, then compression both ways.

    ``options`` is ws' ``perMessageDeflate`` object in snake_case (``True``/``None`` for the
    defaults): ``server_no_context_takeover``, ``client_no_context_takeover``,
    ``server_max_window_bits``, ``client_max_window_bits`` (``True`` or 8..15), ``threshold``
    (default 1024, read by the sender), ``level``, ``mem_level``, ``zlib_deflate_options`` (a
    dict of ``level``, ``mem_level``, ``strategy``; ``level`` and ``mem_level`` given directly
    win). ``zlib_inflate_options`` and ``concurrency_limit`` are accepted and ignored: inflate's
    only setting, the window, comes from the negotiation, and Python's zlib is synchronous.
    ``max_payload`` bounds the inflated size of a message, 0 for no limit.
    """

    EXTENSION_NAME = "permessage-deflate"

    __slots__ = (
        "_options",
        "_is_server",
        "_max_payload",
        "_deflate",
        "_inflate",
        "_inflated",
        "_level",
        "_mem_level",
        "_strategy",
        "threshold",
        "params",
    )

    def __init__(
        self,
        options: Mapping[str, Any] | bool | None = None,
        is_server: bool = False,
        max_payload: int = 0,
    ) -> None:
        self._options: Mapping[str, Any] = options if isinstance(options, Mapping) else {}
        self._is_server = bool(is_server)
        self._max_payload = max(0, int(max_payload))
        self.threshold: int = self._options.get("threshold", 1024)
        """Messages smaller than this many bytes are sent uncompressed (ws' rule)."""
        self.params: Params | None = None
        """The negotiated parameters, set by :meth:`accept`."""
        # zlib contexts are made on first use: a compressor costs ~262 KiB (measured with
        # tracemalloc: window 15, memLevel 8), an inflater ~7 KiB plus its window when used.
        self._deflate: Any = None
        self._inflate: Any = None
        self._inflated = 0  # inflated bytes of the message being received

        for key in ("server_max_window_bits", "client_max_window_bits"):
            value = self._options.get(key)
            if not (value is None or isinstance(value, bool) or value in range(8, 16)):
                raise ValueError(f'Invalid value for option "{key}": {value!r}')
        deflate_options = self._options.get("zlib_deflate_options") or {}
        self._level: int = self._options.get("level", deflate_options.get("level", _DEFAULT_LEVEL))
        self._mem_level: int = self._options.get(
            "mem_level", deflate_options.get("mem_level", _DEFAULT_MEM_LEVEL)
        )
        self._strategy: int = deflate_options.get("strategy", zlib.Z_DEFAULT_STRATEGY)

    # -- negotiation -----------------------------------------------------------------------

    def offer(self) -> dict[str, int | bool]:
        """The client's offer: the parameters to send in ``Sec-WebSocket-Extensions``."""
        opts = self._options
        params: dict[str, int | bool] = {}
        if opts.get("server_no_context_takeover"):
            params["server_no_context_takeover"] = True
        if opts.get("client_no_context_takeover"):
            params["client_no_context_takeover"] = True
        server_bits = _number(opts.get("server_max_window_bits"))
        if server_bits is not None:
            params["server_max_window_bits"] = server_bits
        client_bits = opts.get("client_max_window_bits")
        if client_bits is None:
            # ws: advertise that the server may limit our window unless told not to (False).
            params["client_max_window_bits"] = True
        elif client_bits is not False:
            params["client_max_window_bits"] = client_bits
        return params

    def accept(self, configurations: Sequence[Mapping[str, Sequence[str | bool]]]) -> Params:
        """Accept the client's offers (server) or the server's response (client).

        ``configurations`` is the list that :func:`wsfast.extension.parse` gives for
        ``permessage-deflate``. Returns the accepted parameters (on the server, the ones to
        answer with) and stores them in :attr:`params`. Raises ``ValueError`` with ws' messages
        when a parameter is unknown, repeated or invalid, or when nothing can be accepted.
        """
        normalized = [self._normalize(params) for params in configurations]
        if self._is_server:
            self.params = self._accept_as_server(normalized)
        else:
            self.params = self._accept_as_client(normalized)
        return self.params

    def _normalize(self, params: Mapping[str, Sequence[str | bool]]) -> Params:
        result: Params = {}
        for key, values in params.items():
            if len(values) > 1:
                raise ValueError(f'Parameter "{key}" must have only a single value')
            value = values[0]
            if key not in _PARAMS:
                raise ValueError(f'Unknown parameter "{key}"')
            if key.endswith("_no_context_takeover"):
                if value is not True:
                    raise ValueError(f'Invalid value for parameter "{key}": {_js(value)}')
                result[key] = True
            elif value is True and key == "client_max_window_bits" and self._is_server:
                # A bare client_max_window_bits is valid in an offer only (RFC 7692 7.1.2.2).
                result[key] = True
            elif isinstance(value, str) and _WINDOW_BITS.match(value):
                result[key] = int(value)
            else:
                raise ValueError(f'Invalid value for parameter "{key}": {_js(value)}')
        return result

    def _accept_as_server(self, offers: list[Params]) -> Params:
        opts = self._options
        server_bits = _number(opts.get("server_max_window_bits"))
        client_bits = _number(opts.get("client_max_window_bits"))
        for params in offers:
            # ws' rules: refuse an offer that asks for what the options forbid (an explicit
            # False), that wants a smaller server window than the configured one, or that does
            # not let us choose the client window the options want.
            if opts.get("server_no_context_takeover") is False and params.get(
                "server_no_context_takeover"
            ):
                continue
            offered_bits = params.get("server_max_window_bits")
            if offered_bits and (
                opts.get("server_max_window_bits") is False
                or (server_bits is not None and server_bits > offered_bits)
            ):
                continue
            offered_client_bits = params.get("client_max_window_bits")
            if client_bits is not None and (
                # ws 8.23: an offered number is an upper bound on the client window as well.
                offered_client_bits is None
                or (offered_client_bits is not True and client_bits > offered_client_bits)
            ):
                continue
            accepted = dict(params)
            break
        else:
            raise ValueError("None of the extension offers can be accepted")

        if opts.get("server_no_context_takeover"):
            accepted["server_no_context_takeover"] = True
        if opts.get("client_no_context_takeover"):
            accepted["client_no_context_takeover"] = True
        if server_bits is not None:
            accepted["server_max_window_bits"] = server_bits
        if client_bits is not None:
            accepted["client_max_window_bits"] = client_bits
        elif (
            accepted.get("client_max_window_bits") is True
            or opts.get("client_max_window_bits") is False
        ):
            accepted.pop("client_max_window_bits", None)
        return accepted

    def _accept_as_client(self, response: list[Params]) -> Params:
        params = dict(response[0])
        opts = self._options
        client_bits = _number(opts.get("client_max_window_bits"))
        if opts.get("client_no_context_takeover") is False and params.get(
            "client_no_context_takeover"
        ):
            raise ValueError('Unexpected parameter "client_no_context_takeover"')
        answered_bits = params.get("client_max_window_bits")
        if not answered_bits:
            if client_bits is not None:
                params["client_max_window_bits"] = client_bits
        elif opts.get("client_max_window_bits") is False or (
            client_bits is not None and answered_bits > client_bits
        ):
            raise ValueError('Unexpected or invalid parameter "client_max_window_bits"')
        return params

    # -- compression -----------------------------------------------------------------------

    def _endpoint(self, ours: bool) -> str:
        return "server" if self._is_server == ours else "client"

    @property
    def own_no_context_takeover(self) -> bool:
        """Whether our compressor starts afresh for every message (negotiated for our side)."""
        params = self._negotiated()
        return bool(params.get(self._endpoint(True) + "_no_context_takeover"))

    @property
    def message_key(self) -> tuple[int, int, int, int] | None:
        """What alone decides the compressed bytes of a message from our side, or None.

        With our side's ``*_no_context_takeover`` every message is deflated by a fresh
        compressor, so two connections whose keys are equal (window bits, level, memLevel,
        strategy) produce identical bytes for a message: :func:`deflate_message` with this key
        compresses it once for all of them. With context takeover the bytes depend on the
        connection's history: None.
        """
        params = self._negotiated()
        if not params.get(self._endpoint(True) + "_no_context_takeover"):
            return None
        wbits = _zlib_window(params.get(self._endpoint(True) + "_max_window_bits"), True)
        return (wbits, self._level, self._mem_level, self._strategy)

    def _negotiated(self) -> Params:
        if self.params is None:
            raise RuntimeError("permessage-deflate was not negotiated (call accept() first)")
        return self.params

    def compress(self, data: bytes | bytearray | memoryview, fin: bool) -> bytes:
        """Deflate the payload of one frame of an outgoing message.

        Every frame ends with a sync flush so the peer can inflate it at once; on the last frame
        (``fin``) the flush's ``00 00 ff ff`` is removed (RFC 7692 section 7.2.1). An empty
        message gives ``b"\\x00"``, as ws sends. With our side's ``*_no_context_takeover``
        negotiated, the compressor is dropped after each message (ws does the same), which
        also frees its ~262 KiB until the next message.
        """
        params = self._negotiated()
        deflate = self._deflate
        if deflate is None:
            wbits = _zlib_window(params.get(self._endpoint(True) + "_max_window_bits"), True)
            deflate = self._deflate = _zlib.compressobj(
                self._level, zlib.DEFLATED, -wbits, self._mem_level, self._strategy
            )
        head: bytes = deflate.compress(data)
        tail: bytes = deflate.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if params.get(self._endpoint(True) + "_no_context_takeover"):
                # Dropped rather than reset (ws 8.23 resets, Python's zlib cannot): a new
                # compressor per 1 KiB message measured 15.6 us against 15.4 us for a
                # Z_FULL_FLUSH on a kept one, and dropping frees ~262 KiB between messages.
                self._deflate = None
            # The sync flush always ends with the empty stored block, so the cut is exact.
            tail = tail[:-4]
        return head + tail if head else tail

    def decompress(self, data: bytes | bytearray | memoryview, fin: bool) -> bytes:
        """Inflate the payload of one frame of an incoming message.

        Raises :class:`WebSocketError` with close code 1009 (``WS_ERR_UNSUPPORTED_MESSAGE_LENGTH``)
        as soon as the inflated size of the message passes ``max_payload``, holding at most that
        much output, and with 1007 (``WS_ERR_INVALID_COMPRESSED_DATA``) on invalid deflate data.
        """
        params = self._negotiated()
        inflate = self._inflate
        if inflate is None:
            wbits = _zlib_window(params.get(self._endpoint(False) + "_max_window_bits"), False)
            inflate = self._inflate = _zlib.decompressobj(-wbits)
        try:
            if inflate.eof:
                # The peer ended its deflate stream with a final block in an earlier frame of
                # this message. What follows can only be padding (RFC 7692 7.2.3.4 shows a
                # byte of it); skip it rather than let zlib pile it up in ``unused_data``.
                out = b""
            elif fin and len(data) <= _JOIN_TRAILER_MAX:
                out = self._inflate_chunk(inflate, b"".join((data, TRAILER)))
            else:
                out = self._inflate_chunk(inflate, data)
                if fin:
                    # A second call instead of ``data + TRAILER`` spares a copy of the payload.
                    # Usually empty, and then ``+=`` returns ``out`` itself without a copy.
                    out += self._inflate_chunk(inflate, TRAILER)
        except _ZLIB_ERRORS as exc:
            self._inflate = None
            self._inflated = 0
            raise WebSocketError(str(exc), "WS_ERR_INVALID_COMPRESSED_DATA", 1007) from exc
        except WebSocketError:
            self._inflate = None
            self._inflated = 0
            raise
        if fin:
            self._inflated = 0
            # A fresh inflater after a message from a peer without context takeover (ws does the
            # same, and it frees the window while idle), or after the peer ended its deflate
            # stream with a final block (the old inflater would ignore everything after it).
            if inflate.eof or params.get(self._endpoint(False) + "_no_context_takeover"):
                self._inflate = None
        return out

    def _inflate_chunk(self, inflate: Any, data: bytes | bytearray | memoryview) -> bytes:
        limit = self._max_payload
        if not limit:
            whole: bytes = inflate.decompress(data)
            return whole
        parts: list[bytes] = []
        while True:
            allowance = limit - self._inflated
            # One byte more than allowed tells "exactly at the limit" from "past it".
            step = min(allowance + 1, _INFLATE_STEP)
            out: bytes = inflate.decompress(data, step)
            self._inflated += len(out)
            if len(out) > allowance:
                raise WebSocketError(
                    "Max payload size exceeded", "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", 1009
                )
            parts.append(out)
            # Output shorter than the step means zlib consumed all the input and has nothing
            # pending; a full step may leave input in ``unconsumed_tail`` or output inside zlib
            # (the rest of a long match), which the next call with the tail, maybe empty, gets.
            if len(out) < step or inflate.eof:
                break
            data = inflate.unconsumed_tail
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def cleanup(self) -> None:
        """Release the zlib contexts (on close); they would be made again on next use."""
        self._deflate = None
        self._inflate = None
        self._inflated = 0
