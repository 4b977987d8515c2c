"""Build `tests/vectors/app_hash.json`: the canonical writes encoding and app hash, computed
here by hand (struct + hashlib, not through `emrchain.state`), so the vectors check the code.

Run `python -m tests.state.app_hash_vectors --write` only when the spec deliberately changes.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "app_hash.json"


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


# (name, previous app hash, height, writes in a deliberately unsorted insertion order)
CASES: list[tuple[str, bytes, int, list[tuple[bytes, bytes | None]]]] = [
    ("genesis, no writes", bytes(32), 0, []),
    (
        "put, empty put and delete",
        _digest("previous"),
        7,
        [
            (b"\x12" + _digest("record"), b"anchor-bytes"),
            (b"\x10" + b"\xaa" * 32, struct.pack(">Q", 3)),
            (b"\x01", b""),
            (b"\x04", None),
        ],
    ),
    (
        "large height, long value",
        _digest("chain"),
        (1 << 63) - 1,
        [(b"\x02", bytes(range(256)) * 3), (b"\x01\x00", None)],
    ),
]


def encode(writes: list[tuple[bytes, bytes | None]]) -> bytes:
    out = struct.pack(">I", len(writes))
    for key, value in sorted(writes):
        out += struct.pack(">H", len(key)) + key
        out += b"\x00" if value is None else b"\x01" + struct.pack(">I", len(value)) + value
    return out


def build() -> list[dict[str, object]]:
    vectors = []
    for name, previous, height, writes in CASES:
        encoding = encode(writes)
        digest = hashlib.sha256(encoding).digest()
        vectors.append(
            {
                "name": name,
                "previous_app_hash": previous.hex(),
                "height": height,
                "writes": [
                    [key.hex(), None if value is None else value.hex()] for key, value in writes
                ],
                "encoding": encoding.hex(),
                "writes_digest": digest.hex(),
                "app_hash": hashlib.sha256(
                    previous + struct.pack(">Q", height) + digest
                ).hexdigest(),
            }
        )
    return vectors


if __name__ == "__main__":
    text = json.dumps(build(), indent=2) + "\n"
    if "--write" in sys.argv:
        VECTORS.write_text(text)
    else:
        sys.stdout.write(text)
