"""Bounded big-endian binary reader and writer behind every canonical encoding.

Every variable-length read takes an explicit maximum, so a hostile length prefix can never make
the decoder allocate or loop beyond what the caller allows. `Reader.finish()` refuses trailing
bytes, so each byte string has at most one decoding.
"""

from __future__ import annotations

import struct


class DecodeError(ValueError):
    """The bytes are not a valid canonical encoding; the message says where and why."""


class EncodeError(ValueError):
    """A value cannot be encoded (out of range for its wire type)."""


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


class Writer:
    """Appends canonical big-endian fields to a buffer."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def u8(self, value: int) -> Writer:
        self._check(value, 0, 0xFF, "u8")
        self._buffer.append(value)
        return self

    def u16(self, value: int) -> Writer:
        self._check(value, 0, 0xFFFF, "u16")
        self._buffer += _U16.pack(value)
        return self

    def u32(self, value: int) -> Writer:
        self._check(value, 0, U32_MAX, "u32")
        self._buffer += _U32.pack(value)
        return self

    def i32(self, value: int) -> Writer:
        self._check(value, -(1 << 31), (1 << 31) - 1, "i32")
        self._buffer += _I32.pack(value)
        return self

    def u64(self, value: int) -> Writer:
        self._check(value, 0, U64_MAX, "u64")
        self._buffer += _U64.pack(value)
        return self

    def fixed(self, value: bytes, length: int) -> Writer:
        if not isinstance(value, bytes) or len(value) != length:
            raise EncodeError(f"expected exactly {length} bytes")
        self._buffer += value
        return self

    def var_bytes(self, value: bytes, prefix_bytes: int) -> Writer:
        """Length prefix of 1, 2 or 4 bytes, then the bytes."""
        if not isinstance(value, bytes):
            raise EncodeError("expected bytes")
        {1: self.u8, 2: self.u16, 4: self.u32}[prefix_bytes](len(value))
        self._buffer += value
        return self

    def var_bytes_u32_list(self, values: tuple[bytes, ...] | list[bytes]) -> Writer:
        """Each value as `var_bytes(value, 4)`, in one pass (the transactions of a block or a
        gossip batch: thousands of items, where the per-call path dominated encoding)."""
        pack = _U32.pack
        parts: list[bytes] = []
        append = parts.append
        for value in values:
            if not isinstance(value, bytes):
                raise EncodeError("expected bytes")
            if len(value) > U32_MAX:
                raise EncodeError(f"{len(value)!r} does not fit u32")
            append(pack(len(value)))
            append(value)
        self._buffer += b"".join(parts)
        return self

    def raw(self, value: bytes) -> Writer:
        self._buffer += value
        return self

    def bytes(self) -> bytes:
        return bytes(self._buffer)

    @staticmethod
    def _check(value: int, low: int, high: int, name: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise EncodeError(f"{value!r} does not fit {name}")


class Reader:
    """Reads canonical fields from `data`; every failure is a DecodeError naming the field."""

    __slots__ = ("_data", "_position", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
        self._data = bytes(data)
        self._position = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._position

    def _take(self, length: int, field: str) -> bytes:
        if length > self.remaining:
            raise DecodeError(f"{self._what}.{field}: needs {length} bytes, {self.remaining} left")
        start = self._position
        self._position += length
        return self._data[start : self._position]

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def peek_u8(self, field: str) -> int:
        """The next byte, not consumed (a tag that selects how to read what follows)."""
        if not self.remaining:
            raise DecodeError(f"{self._what}.{field}: needs 1 byte, 0 left")
        return self._data[self._position]

    def u16(self, field: str) -> int:
        value: int = _U16.unpack(self._take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = _U32.unpack(self._take(4, field))[0]
        return value

    def i32(self, field: str) -> int:
        value: int = _I32.unpack(self._take(4, field))[0]
        return value

    def u64(self, field: str) -> int:
        value: int = _U64.unpack(self._take(8, field))[0]
        return value

    def fixed(self, length: int, field: str) -> bytes:
        return self._take(length, field)

    def magic_and_version(self, magic: bytes, version: int, what: str) -> None:
        """The leading magic bytes and u8 version of a stored record; `what` names it."""
        if self._take(len(magic), "magic") != magic:
            raise DecodeError(f"{what}: bad magic")
        found = self.u8("version")
        if found != version:
            raise DecodeError(f"{what}: unsupported version {found}")

    def var_bytes(self, prefix_bytes: int, maximum: int, field: str) -> bytes:
        length = {1: self.u8, 2: self.u16, 4: self.u32}[prefix_bytes](field)
        if length > maximum:
            raise DecodeError(f"{self._what}.{field}: length {length} exceeds {maximum}")
        return self._take(length, field)

    def var_bytes_u32_list(self, count: int, maximum: int, field: str) -> tuple[bytes, ...]:
        """`count` items each read as `var_bytes(4, maximum, field)`, in one pass, with the
        same checks and messages (the per-call path dominated decoding blocks and gossip)."""
        data = self._data
        end = len(data)
        position = self._position
        unpack = _U32.unpack_from
        items: list[bytes] = []
        append = items.append
        try:
            for _ in range(count):
                if position + 4 > end:
                    self._position = position
                    self._take(4, field)  # raises with the usual message
                (length,) = unpack(data, position)
                position += 4
                if length > maximum:
                    raise DecodeError(f"{self._what}.{field}: length {length} exceeds {maximum}")
                if position + length > end:
                    self._position = position
                    self._take(length, field)  # raises with the usual message
                append(data[position : position + length])
                position += length
        finally:
            self._position = position
        return tuple(items)

    def count(self, prefix_bytes: int, maximum: int, field: str) -> int:
        """A list length; checked against `maximum` before any item is read."""
        value = {1: self.u8, 2: self.u16, 4: self.u32}[prefix_bytes](field)
        if value > maximum:
            raise DecodeError(f"{self._what}.{field}: count {value} exceeds {maximum}")
        return value

    def finish(self) -> None:
        if self.remaining:
            raise DecodeError(f"{self._what}: {self.remaining} trailing bytes")
