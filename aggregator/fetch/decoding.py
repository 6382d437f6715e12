"""Content-Encoding undone in bounded steps, so a compression bomb is stopped early."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import brotli

from aggregator.errors import FetchError

STEP = 64 * 1024  # decompressed bytes produced per step (brotli's steps may be a little more)


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._started = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not self._started and self._wbits == zlib.MAX_WBITS and data:
            self._started = True
            try:  # "deflate" is meant to be zlib-wrapped; many servers send it raw
                first = self._inflate.decompress(data, STEP)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                first = self._inflate.decompress(data, STEP)
            yield first
            data = self._inflate.unconsumed_tail
        while data:
            yield self._inflate.decompress(data, STEP)
            data = self._inflate.unconsumed_tail

    def flush(self) -> Iterator[bytes]:
        while True:
            piece = self._inflate.decompress(b"", STEP)
            if not piece:
                break
            yield piece
        yield self._inflate.flush()


class _Brotli:
    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        # The limit is a soft one (the buffer grows in blocks): steps of up to ~1.5 STEP.
        piece = self._decompressor.process(data, output_buffer_limit=STEP)
        while piece:
            yield piece
            piece = self._decompressor.process(b"", output_buffer_limit=STEP)

    def flush(self) -> Iterator[bytes]:
        return iter(())


class _Identity:
    def decode(self, data: bytes) -> Iterator[bytes]:
        yield data

    def flush(self) -> Iterator[bytes]:
        return iter(())


_Step = _Zlib | _Brotli | _Identity


def _step(coding: str) -> _Step:
    if coding in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if coding == "br":
        return _Brotli()
    if coding in ("identity", ""):
        return _Identity()
    raise FetchError(f"unsupported Content-Encoding {coding!r}")


class BoundedDecoder:
    """Undoes a Content-Encoding chain ("gzip", "br", "deflate, gzip"...), never
    producing more than STEP bytes per step, so a bomb is stopped by the
    caller's cap before it can fill memory."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        # Applied in the order listed, so undone in reverse.
        self._steps = [_step(c) for c in reversed(codings)]
        # Nothing to undo: the bytes are the body (the common case, kept cheap).
        self.passthrough = all(isinstance(step, _Identity) for step in self._steps)

    def decode(self, data: bytes) -> Iterator[bytes]:
        return self._run(0, data)

    def _run(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._steps):
            if data:
                yield data
            return
        try:
            for piece in self._steps[index].decode(data):
                yield from self._run(index + 1, piece)
        except (zlib.error, brotli.error) as exc:
            raise FetchError(f"cannot decode the body: {exc}") from None

    def flush(self) -> Iterator[bytes]:
        for index, step in enumerate(self._steps):
            try:
                for piece in step.flush():
                    yield from self._run(index + 1, piece)
            except (zlib.error, brotli.error) as exc:
                raise FetchError(f"cannot decode the body: {exc}") from None
