# cython: language_level=3, binding=False, boundscheck=False, wraparound=False
# cython: initializedcheck=False, embedsignature=True
"""Native WebSocket masking for wsfast, the twin of ws' optional ``bufferutil`` addon.

``mask`` and ``unmask`` accept any object with the buffer protocol. ``bytes``/``bytearray``
arguments skip the buffer protocol altogether: at 16 bytes acquiring and releasing a buffer
costs more than the XOR itself.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    # Declared without an exception spec: a failure is inspected (BufferError -> TypeError)
    # rather than propagated as is.
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)
    void PyBuffer_Release(Py_buffer *view)
    enum:
        PyBUF_SIMPLE
        PyBUF_WRITABLE
    bint PyBytes_CheckExact(object o)
    bint PyByteArray_CheckExact(object o)
    char *PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    char *PyByteArray_AS_STRING(object o)
    Py_ssize_t PyByteArray_GET_SIZE(object o)
    Py_ssize_t PyNumber_AsSsize_t(object o, object exc) except? -1
    int PyErr_ExceptionMatches(object exc)
    void PyErr_Clear()
    void *PyMem_Malloc(size_t n)
    void PyMem_Free(void *p)
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    int PyList_Append(object lst, object item) except -1
    int PyBuffer_FillInfo(Py_buffer *view, object obj, void *buf, Py_ssize_t len, int readonly,
                          int flags) except -1
    const Py_ssize_t PY_SSIZE_T_MAX

cdef extern from "wsfast_mask.h":
    ctypedef void (*wsf_mask_fn)(const unsigned char *src, unsigned char *dst, size_t n,
                                 uint32_t key) noexcept nogil
    wsf_mask_fn wsf_mask_impl
    const char *wsf_mask_impl_name
    void wsf_mask_init(const char *force) noexcept
    void wsf_mask_run(const unsigned char *src, unsigned char *dst, size_t n,
                      uint32_t key) noexcept nogil
    void wsf_mask_pieces(const unsigned char *const *srcs, const size_t *lens, size_t count,
                         unsigned char *dst, uint32_t key) noexcept nogil

__version__ = "0.1.0"
__all__ = [
    "mask",
    "unmask",
    "unmasked",
    "concat_unmasked",
    "PayloadBuffer",
    "scan_frames",
    "__version__",
]

wsf_mask_init(NULL)


cdef int _acquire(object obj, Py_buffer *view, int flags, str what) except -1:
    if _get_buffer(obj, view, flags) < 0:
        # A read-only or non-contiguous buffer raises BufferError from the buffer protocol;
        # the pure-Python twin raises TypeError for both (memoryview.readonly, cast("B")).
        if PyErr_ExceptionMatches(BufferError):
            PyErr_Clear()
            if flags & PyBUF_WRITABLE:
                raise TypeError(f"{what} must be a writable, contiguous buffer")
            raise TypeError(f"{what} must be a contiguous buffer")
        return -1  # the buffer protocol's own exception (TypeError) stays set
    return 0


cdef int _read_key(object key_obj, uint32_t *key) except -1:
    cdef Py_buffer view
    if PyBytes_CheckExact(key_obj) and PyBytes_GET_SIZE(key_obj) >= 4:
        memcpy(key, PyBytes_AS_STRING(key_obj), 4)
        return 0
    _acquire(key_obj, &view, PyBUF_SIMPLE, "mask")
    if view.len < 4:
        PyBuffer_Release(&view)
        raise ValueError("mask must be 4 bytes long")
    memcpy(key, view.buf, 4)
    PyBuffer_Release(&view)
    return 0


def mask(source, mask, output, offset, length):
    """Write ``source[:length]`` XOR ``mask`` into ``output[offset:offset + length]``.

    ``mask`` is a buffer of at least 4 bytes (the first 4 are used). Raises TypeError if
    ``output`` is read-only and ValueError for a short mask or an out-of-range offset/length.
    """
    cdef uint32_t key
    cdef Py_buffer oview
    cdef Py_buffer sview
    cdef bint ohold = False
    cdef bint shold = False
    cdef Py_ssize_t off, n, olen, slen
    cdef unsigned char *optr
    cdef const unsigned char *sptr
    cdef unsigned char *tmp

    _read_key(mask, &key)
    if not PyByteArray_CheckExact(output):
        _acquire(output, &oview, PyBUF_WRITABLE, "output")
        ohold = True
    try:
        off = PyNumber_AsSsize_t(offset, ValueError)
        n = PyNumber_AsSsize_t(length, ValueError)
        # Pointers are read only now: __index__ above may have run Python code.
        if ohold:
            optr = <unsigned char *>oview.buf
            olen = oview.len
        else:
            optr = <unsigned char *>PyByteArray_AS_STRING(output)
            olen = PyByteArray_GET_SIZE(output)
        if off < 0 or n < 0 or off > olen - n:
            raise ValueError("offset/length out of range of output")
        if PyBytes_CheckExact(source):
            sptr = <const unsigned char *>PyBytes_AS_STRING(source)
            slen = PyBytes_GET_SIZE(source)
        elif PyByteArray_CheckExact(source):
            sptr = <const unsigned char *>PyByteArray_AS_STRING(source)
            slen = PyByteArray_GET_SIZE(source)
        else:
            _acquire(source, &sview, PyBUF_SIMPLE, "source")
            shold = True
            sptr = <const unsigned char *>sview.buf
            slen = sview.len
        if n > slen:
            raise ValueError("length exceeds source")
        optr += off
        if optr > sptr and optr < sptr + n:
            # Output starts inside the source: a forward pass would read bytes it has already
            # overwritten. The fallback computes the whole result first; do the same.
            tmp = <unsigned char *>PyMem_Malloc(<size_t>n)
            if tmp == NULL:
                raise MemoryError()
            wsf_mask_run(sptr, tmp, <size_t>n, key)
            memcpy(optr, tmp, <size_t>n)
            PyMem_Free(tmp)
        else:
            wsf_mask_run(sptr, optr, <size_t>n, key)
    finally:
        if shold:
            PyBuffer_Release(&sview)
        if ohold:
            PyBuffer_Release(&oview)


def unmask(buffer, mask):
    """XOR ``buffer`` with ``mask`` in place. ``buffer`` must be writable (else TypeError)."""
    cdef uint32_t key
    cdef Py_buffer view
    _read_key(mask, &key)
    if PyByteArray_CheckExact(buffer):
        wsf_mask_run(<const unsigned char *>PyByteArray_AS_STRING(buffer),
                      <unsigned char *>PyByteArray_AS_STRING(buffer),
                      <size_t>PyByteArray_GET_SIZE(buffer), key)
        return
    _acquire(buffer, &view, PyBUF_WRITABLE, "buffer")
    wsf_mask_run(<const unsigned char *>view.buf, <unsigned char *>view.buf,
                  <size_t>view.len, key)
    PyBuffer_Release(&view)


def unmasked(data, mask):
    """A new ``bytes`` holding ``data`` XOR ``mask``; ``data`` (any buffer) is left as it is.

    One pass from the source into an output that is not zero-filled first: the cost of a plain
    copy, against a copy and then an in-place ``unmask``.
    """
    cdef uint32_t key
    cdef Py_buffer view
    cdef bytes out
    cdef Py_ssize_t n
    _read_key(mask, &key)
    if PyBytes_CheckExact(data) or PyByteArray_CheckExact(data):
        # No Python code runs between reading the pointer and the copy.
        n = PyBytes_GET_SIZE(data) if PyBytes_CheckExact(data) else PyByteArray_GET_SIZE(data)
        out = PyBytes_FromStringAndSize(NULL, n)
        wsf_mask_run(<const unsigned char *>(PyBytes_AS_STRING(data) if PyBytes_CheckExact(data)
                                             else PyByteArray_AS_STRING(data)),
                     <unsigned char *>PyBytes_AS_STRING(out), <size_t>n, key)
        return out
    _acquire(data, &view, PyBUF_SIMPLE, "data")
    try:
        out = PyBytes_FromStringAndSize(NULL, view.len)
        wsf_mask_run(<const unsigned char *>view.buf, <unsigned char *>PyBytes_AS_STRING(out),
                     <size_t>view.len, key)
    finally:
        PyBuffer_Release(&view)
    return out


def concat_unmasked(chunks, mask):
    """A new ``bytes`` holding the concatenation of ``chunks`` XOR ``mask``, in one pass.

    ``chunks`` is a sequence (or iterable) of buffers: the pieces of one masked payload, as
    received. The mask's phase carries on across pieces (byte ``i`` of the whole is XORed with
    ``mask[i & 3]``), so the result is ``unmasked(b"".join(chunks), mask)`` without the join.
    """
    cdef uint32_t key
    cdef Py_ssize_t count, i, held = 0
    cdef size_t total = 0
    cdef PyObject **items
    cdef Py_buffer *views = NULL
    cdef const unsigned char **ptrs = NULL
    cdef size_t *lens = NULL
    cdef object item
    cdef bytes out
    _read_key(mask, &key)
    seq = PySequence_Fast(chunks, "chunks must be an iterable of buffers")
    count = PySequence_Fast_GET_SIZE(seq)
    if count == 1:
        return unmasked(<object>PySequence_Fast_ITEMS(seq)[0], mask)
    views = <Py_buffer *>PyMem_Malloc(<size_t>(count + 1) * sizeof(Py_buffer))
    ptrs = <const unsigned char **>PyMem_Malloc(<size_t>(count + 1) * sizeof(void *))
    lens = <size_t *>PyMem_Malloc(<size_t>(count + 1) * sizeof(size_t))
    try:
        if views == NULL or ptrs == NULL or lens == NULL:
            raise MemoryError()
        items = PySequence_Fast_ITEMS(seq)
        for i in range(count):
            item = <object>items[i]
            if PyBytes_CheckExact(item):
                # Immutable, and kept alive by seq: no view needed.
                ptrs[i] = <const unsigned char *>PyBytes_AS_STRING(item)
                lens[i] = <size_t>PyBytes_GET_SIZE(item)
            else:
                # Every other buffer (bytearray included) is held until the copy is done, so
                # that it can neither move nor be resized meanwhile.
                _acquire(item, &views[held], PyBUF_SIMPLE, "chunk")
                ptrs[i] = <const unsigned char *>views[held].buf
                lens[i] = <size_t>views[held].len
                held += 1
            total += lens[i]
        if total > <size_t>PY_SSIZE_T_MAX:
            raise OverflowError("chunks too large")
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>total)
        wsf_mask_pieces(ptrs, lens, <size_t>count, <unsigned char *>PyBytes_AS_STRING(out), key)
    finally:
        for i in range(held):
            PyBuffer_Release(&views[i])
        PyMem_Free(views)
        PyMem_Free(ptrs)
        PyMem_Free(lens)
    return out


@cython.auto_pickle(False)
cdef class PayloadBuffer:
    """A new ``bytes`` of ``size`` bytes, written in place before anyone else sees it.

    The object exports a writable buffer over the ``bytes``' storage, which is not zero-filled:
    a socket reads a frame's payload straight into it (``recv_into``, an asyncio
    ``BufferedProtocol``), it is unmasked in place, and :meth:`take` hands it over as an
    ordinary ``bytes``, the payload's one and only copy. After :meth:`take` no new buffer is
    exported; the caller must be done writing through the ones it still holds (they keep the
    storage alive, so a late write cannot touch freed memory, but it would change the
    ``bytes``).
    """

    cdef bytes _data
    cdef bint _taken

    def __cinit__(self, Py_ssize_t size):
        if size < 0:
            raise ValueError("size must not be negative")
        self._data = PyBytes_FromStringAndSize(NULL, size)
        self._taken = False

    def __len__(self):
        return PyBytes_GET_SIZE(self._data)

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self._taken:
            raise BufferError("the payload was taken")
        PyBuffer_FillInfo(view, self, PyBytes_AS_STRING(self._data),
                          PyBytes_GET_SIZE(self._data), 0, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def take(self):
        """The ``bytes``, filled; the buffer exports no more views."""
        self._taken = True
        return self._data


#: Text payloads up to this size are unmasked on the stack before decoding.
cdef enum:
    _STACK_TEXT = 1024


def scan_frames(data, Py_ssize_t pos, bint masked, Py_ssize_t max_payload, list out):
    """Parse the whole, simple data frames of ``data`` from ``pos``; returns where they end.

    A simple frame is FIN with opcode text or binary, RSV bits clear, masked if and only if
    ``masked``, a 7- or 16-bit length within ``max_payload`` (0: no limit), and entirely in
    ``data``. Each one's payload is appended to ``out``, unmasked: ``bytes`` for binary, ``str``
    for text. The scan stops before the first frame that is not simple or not complete, and
    before a text frame that is not valid UTF-8, leaving it to the caller's general parser
    (which reports the error). ``data`` is any contiguous buffer.
    """
    cdef Py_buffer view
    cdef bint held = False
    cdef const unsigned char *p
    cdef const unsigned char *src
    cdef unsigned char *tmp
    cdef unsigned char stack[_STACK_TEXT]
    cdef Py_ssize_t size, length, start, end
    cdef unsigned char b0, b1
    cdef unsigned char mask_bit = 0x80 if masked else 0
    cdef uint32_t key = 0
    cdef bytes payload
    cdef object text
    if PyBytes_CheckExact(data):
        p = <const unsigned char *>PyBytes_AS_STRING(data)
        size = PyBytes_GET_SIZE(data)
    else:
        _acquire(data, &view, PyBUF_SIMPLE, "data")
        held = True
        p = <const unsigned char *>view.buf
        size = view.len
    try:
        if pos < 0:
            raise ValueError("pos must not be negative")
        while size - pos >= 2:
            b0 = p[pos]
            b1 = p[pos + 1]
            if (b0 != 0x81 and b0 != 0x82) or (b1 & 0x80) != mask_bit:
                break
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    break
                length = (<Py_ssize_t>p[start] << 8) | p[start + 1]
                start += 2
            elif length == 127:
                break
            if max_payload > 0 and length > max_payload:
                break
            if masked:
                if size - start < 4 + length:
                    break
                memcpy(&key, p + start, 4)
                src = p + start + 4
                end = start + 4 + length
            else:
                if size - start < length:
                    break
                src = p + start
                end = start + length
            if b0 == 0x82:
                payload = PyBytes_FromStringAndSize(NULL, length)
                if masked:
                    wsf_mask_run(src, <unsigned char *>PyBytes_AS_STRING(payload),
                                 <size_t>length, key)
                elif length:
                    memcpy(PyBytes_AS_STRING(payload), src, <size_t>length)
                PyList_Append(out, payload)
            else:
                tmp = NULL
                if masked and length:
                    # Unmasked into a scratch buffer: the decoder makes the only object.
                    if length <= _STACK_TEXT:
                        tmp = stack
                    else:
                        tmp = <unsigned char *>PyMem_Malloc(<size_t>length)
                        if tmp == NULL:
                            raise MemoryError()
                    wsf_mask_run(src, tmp, <size_t>length, key)
                    src = tmp
                try:
                    text = PyUnicode_DecodeUTF8(<const char *>src, length, NULL)
                except UnicodeDecodeError:
                    text = None
                finally:
                    if tmp != NULL and tmp != stack:
                        PyMem_Free(tmp)
                if text is None:
                    break  # invalid UTF-8: the general parser fails the connection (1007)
                PyList_Append(out, text)
            pos = end
    finally:
        if held:
            PyBuffer_Release(&view)
    return pos


def _kernel():
    """Name of the masking kernel in use (``avx2``, ``sse2``, ``neon``, ``words``, or a pinned
    ``avx512``); with AVX-512 present, copies of 256 KiB and more use it regardless."""
    return wsf_mask_impl_name.decode()


def _use_kernel(name=None):
    """Pin a kernel by name (tests exercise each); None picks the best one again."""
    if name is None:
        wsf_mask_init(NULL)
    else:
        b = name.encode()
        wsf_mask_init(b)
    return _kernel()
