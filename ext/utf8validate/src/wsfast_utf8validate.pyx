# cython: language_level=3, binding=False, boundscheck=False, wraparound=False
# cython: initializedcheck=False, embedsignature=True
"""Native UTF-8 validation for wsfast, the twin of ws' optional ``utf-8-validate`` addon.

``is_valid_utf8`` checks a whole message; ``Utf8Validator`` checks one that arrives in
fragments and says False on the first fragment that makes it invalid (RFC 6455 section 8.1
lets an endpoint fail the connection as soon as it sees invalid UTF-8; Autobahn 6.4.x checks
that it does).
"""

from libc.string cimport memcpy

cdef extern from "Python.h":
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)
    void PyBuffer_Release(Py_buffer *view)
    enum:
        PyBUF_SIMPLE
    bint PyBytes_CheckExact(object o)
    bint PyByteArray_CheckExact(object o)
    char *PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    char *PyByteArray_AS_STRING(object o)
    Py_ssize_t PyByteArray_GET_SIZE(object o)
    int PyErr_ExceptionMatches(object exc)
    void PyErr_Clear()

cdef extern from "wsfast_utf8.h":
    ctypedef int (*wsf_utf8_fn)(const unsigned char *p, size_t n, size_t *tail) noexcept nogil
    wsf_utf8_fn wsf_utf8_impl
    const char *wsf_utf8_impl_name
    int wsf_utf8_init(const char *force) noexcept
    int wsf_utf8_scalar(const unsigned char *p, size_t n, size_t *tail) noexcept nogil
    int wsf_utf8_check(const unsigned char *p, size_t n, size_t *tail) noexcept nogil

__version__ = "0.1.0"
__all__ = ["is_valid_utf8", "Utf8Validator", "__version__"]

wsf_utf8_init(NULL)

# Above this size the GIL is released while validating (bytes and exported buffers only: an
# un-exported bytearray could be resized by another thread meanwhile). ~60 us at 16 GB/s, far
# above the cost of giving the GIL up and taking it back.
cdef enum:
    NOGIL_FROM = 1 << 20


cdef int _acquire(object obj, Py_buffer *view) except -1:
    if _get_buffer(obj, view, PyBUF_SIMPLE) < 0:
        # Non-contiguous buffers raise BufferError; CPython's decoder, which the pure-Python
        # twin uses, raises TypeError for them.
        if PyErr_ExceptionMatches(BufferError):
            PyErr_Clear()
            raise TypeError("a contiguous bytes-like object is required")
        return -1
    return 0


cdef inline bint _check_all(const unsigned char *p, size_t n, bint may_release) noexcept:
    cdef size_t tail = 0
    cdef int ok
    if may_release and n >= NOGIL_FROM:
        with nogil:
            ok = wsf_utf8_check(p, n, &tail)
    else:
        ok = wsf_utf8_check(p, n, &tail)
    return ok and tail == 0


def is_valid_utf8(buffer):
    """True if ``buffer`` (any bytes-like object) is entirely valid UTF-8 (RFC 3629)."""
    cdef Py_buffer view
    cdef bint ok
    if PyBytes_CheckExact(buffer):
        return _check_all(<const unsigned char *>PyBytes_AS_STRING(buffer),
                          <size_t>PyBytes_GET_SIZE(buffer), True)
    if PyByteArray_CheckExact(buffer):
        return _check_all(<const unsigned char *>PyByteArray_AS_STRING(buffer),
                          <size_t>PyByteArray_GET_SIZE(buffer), False)
    _acquire(buffer, &view)
    ok = _check_all(<const unsigned char *>view.buf, <size_t>view.len, True)
    PyBuffer_Release(&view)
    return ok


cdef inline size_t _sequence_length(unsigned char lead) noexcept:
    # Only called on a lead that the validator already accepted (C2..F4).
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    return 4


cdef class Utf8Validator:
    """Incremental, fail-fast UTF-8 validation of a message that arrives in fragments.

    ``feed(chunk)`` returns False as soon as the bytes seen so far cannot begin valid UTF-8,
    even in the middle of a character (``b"\\xed\\xa0"``, ``b"\\xf4\\x90"``); a character split
    across chunks is carried over (at most 3 bytes are kept). ``feed(chunk, final=True)`` also
    refuses a message that ends inside a character, and leaves the validator ready for the next
    message. After a False every ``feed`` returns False until ``reset()``.
    """

    cdef unsigned char pending[4]
    cdef size_t npending
    cdef bint failed

    def __cinit__(self):
        self.npending = 0
        self.failed = False

    cdef bint _feed(self, const unsigned char *p, size_t n, bint final, bint may_release) noexcept:
        cdef unsigned char joined[4]
        cdef size_t k, take, tail = 0
        cdef int ok
        if self.failed:
            return False
        if self.npending:
            # Finish the character left open by the previous chunk before the bulk check.
            k = self.npending
            take = _sequence_length(self.pending[0]) - k
            if take > n:
                take = n
            memcpy(joined, self.pending, k)
            memcpy(joined + k, p, take)
            if not wsf_utf8_scalar(joined, k + take, &tail):
                self.failed = True
                return False
            if tail:
                # Still open: the whole chunk went into it.
                if final:
                    self.failed = True
                    return False
                memcpy(self.pending, joined, k + take)
                self.npending = k + take
                return True
            self.npending = 0
            p += take
            n -= take
        if may_release and n >= NOGIL_FROM:
            with nogil:
                ok = wsf_utf8_check(p, n, &tail)
        else:
            ok = wsf_utf8_check(p, n, &tail)
        if not ok or (tail and final):
            self.failed = True
            return False
        if tail:
            memcpy(self.pending, p + n - tail, tail)
            self.npending = tail
        return True

    def feed(self, buffer, final=False):
        """Validate the next chunk; ``final`` says no more bytes follow in this message."""
        cdef Py_buffer view
        cdef bint fin = final
        cdef bint ok
        if PyBytes_CheckExact(buffer):
            return self._feed(<const unsigned char *>PyBytes_AS_STRING(buffer),
                              <size_t>PyBytes_GET_SIZE(buffer), fin, True)
        if PyByteArray_CheckExact(buffer):
            return self._feed(<const unsigned char *>PyByteArray_AS_STRING(buffer),
                              <size_t>PyByteArray_GET_SIZE(buffer), fin, False)
        _acquire(buffer, &view)
        ok = self._feed(<const unsigned char *>view.buf, <size_t>view.len, fin, True)
        PyBuffer_Release(&view)
        return ok

    def reset(self):
        """Forget any partial character and any failure, ready for the next message."""
        self.npending = 0
        self.failed = False


def _kernel():
    """Name of the validation kernel in use (``avx512``, ``avx2``, ``neon``, ``scalar``)."""
    return wsf_utf8_impl_name.decode()


def _use_kernel(name=None):
    """Pin a kernel by name (tests run each); None picks the best one. ValueError if the CPU
    lacks it."""
    if name is None:
        wsf_utf8_init(NULL)
    else:
        b = name.encode()
        if not wsf_utf8_init(b):
            raise ValueError(f"kernel {name!r} is not available on this CPU")
    return _kernel()
