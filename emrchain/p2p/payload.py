"""Bounded msgpack payloads for the node's reactors (consensus, mempool, blocksync).

The p2p layer moves opaque bytes; reactors that choose msgpack decode them here so that a peer
can never make a reactor allocate beyond the configured limits: every length and count is
checked by msgpack's C unpacker *before* it allocates, and each violation raises a
`PayloadLimitError` naming the `P2PConfig` field that was exceeded.
"""

from __future__ import annotations

import re
from typing import Any

import msgpack

from emrchain.p2p.config import P2PConfig
from emrchain.p2p.errors import PayloadError, PayloadLimitError

# msgpack reports limit violations as ValueError("<n> exceeds max_<kind>_len(<limit>)").
_LIMIT_MESSAGE = re.compile(r"exceeds (max_(?:str|bin|array|map|ext)_len)")
_LIMIT_FIELDS = {
    "max_str_len": "msgpack_max_str_bytes",
    "max_bin_len": "msgpack_max_bin_bytes",
    "max_array_len": "msgpack_max_array_items",
    "max_map_len": "msgpack_max_map_items",
    "max_ext_len": "msgpack_ext_types",
}


def _refuse_ext(code: int, data: bytes) -> Any:
    # Extension types (timestamps included) are not part of any emrchain message.
    raise PayloadLimitError("msgpack_ext_types", f"extension type {code} is not accepted")


class MsgpackPayloads:
    """Encode and decode msgpack payloads under the limits of one `P2PConfig`."""

    __slots__ = ("_config", "_max_encoded_bytes")

    def __init__(self, config: P2PConfig) -> None:
        config.validate()
        self._config = config
        # An encoded payload must fit both the decoder's buffer and one frame.
        self._max_encoded_bytes = min(config.msgpack_max_buffer_bytes, config.max_payload_bytes)

    def pack(self, value: Any) -> bytes:
        """Encode `value` (bytes stay bin, str stays str); refuse a result too big to send.

        Unsupported Python types raise msgpack's TypeError: that is a bug in the caller.
        """
        data = msgpack.packb(value, use_bin_type=True)
        if len(data) > self._max_encoded_bytes:
            raise PayloadLimitError(
                "msgpack_max_buffer_bytes",
                f"encoded payload of {len(data)} bytes > {self._max_encoded_bytes}",
            )
        return data

    def unpack(self, data: bytes) -> Any:
        """Decode exactly one msgpack object from `data` or raise PayloadError.

        Refused: anything over a configured limit, truncated input, trailing bytes, invalid
        UTF-8 in strings, map keys other than str/bytes, extension types, and nesting deeper
        than msgpack's fixed stack.
        """
        config = self._config
        if len(data) > config.msgpack_max_buffer_bytes:
            raise PayloadLimitError(
                "msgpack_max_buffer_bytes",
                f"payload of {len(data)} bytes > {config.msgpack_max_buffer_bytes}",
            )
        unpacker = msgpack.Unpacker(
            max_buffer_size=config.msgpack_max_buffer_bytes,
            max_str_len=config.msgpack_max_str_bytes,
            max_bin_len=config.msgpack_max_bin_bytes,
            max_array_len=config.msgpack_max_array_items,
            max_map_len=config.msgpack_max_map_items,
            max_ext_len=0,
            ext_hook=_refuse_ext,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
        try:
            unpacker.feed(data)
            value = unpacker.unpack()
        except PayloadError:
            raise
        except msgpack.OutOfData:
            raise PayloadError("truncated msgpack payload") from None
        except msgpack.StackError:
            raise PayloadError("msgpack payload nested too deeply") from None
        except ValueError as error:  # FormatError, UnicodeDecodeError and limits are ValueErrors
            match = _LIMIT_MESSAGE.search(str(error))
            if match:
                raise PayloadLimitError(_LIMIT_FIELDS[match.group(1)], str(error)) from None
            raise PayloadError(f"malformed msgpack payload: {error}") from None
        except Exception as error:  # any other unpacker failure is still just bad input
            raise PayloadError(f"malformed msgpack payload: {error!r}") from None
        if unpacker.tell() != len(data):
            raise PayloadError(f"{len(data) - unpacker.tell()} trailing bytes after the payload")
        return value
