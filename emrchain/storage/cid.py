"""IPFS content identifiers, computed exactly as `ipfs add --cid-version=1 --raw-leaves` does.

Kubo's defaults for that command (fixed-size chunker `size-262144`, balanced layout, at most 174
links per node, sha2-256) give:

- data of at most one chunk (including zero bytes): a CIDv1 with the `raw` codec (0x55) whose
  multihash digest is simply SHA-256 of the data;
- larger data: a UnixFS file DAG. Every chunk is a raw leaf; leaves are grouped, in order, under
  `dag-pb` (0x70) nodes of up to 174 links, those nodes under further nodes, until one root
  remains. The CID is the root node's (CIDv1, dag-pb, sha2-256).

Only these two CID shapes are produced or accepted (`ContentId`); the text form is multibase
base32 lowercase without padding, prefix `b` (`bafk...` for raw, `bafy...` for dag-pb).

Why our own encoder: the only piece that needs an encoder is the dag-pb node of a file DAG, and
no well-kept Python package builds UnixFS files (the `multiformats` and `py-cid` packages parse
and print CIDs only; `libipld` covers DAG-CBOR and CAR). A generic protobuf library would also
be wrong here: the dag-pb spec requires `Links` (field 2) to be written *before* `Data`
(field 1), the reverse of protobuf's field-number order. The encoder below is the handful of
fixed fields a UnixFS file node has; `tests/vectors/cid.json` pins its output.

References: CID spec (github.com/multiformats/cid), unsigned-varint and multibase specs
(github.com/multiformats), dag-pb spec (ipld.io/specs/codecs/dag-pb/spec/), UnixFS spec
(github.com/ipfs/specs, UNIXFS.md: `Data` message, balanced layout).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

CID_VERSION = 1
RAW_CODEC = 0x55
DAG_PB_CODEC = 0x70
SHA2_256_CODE = 0x12
SHA2_256_LENGTH = 32

CHUNK_SIZE = 262_144
"""Kubo's default chunker, `size-262144`."""
MAX_LINKS = 174
"""Kubo's default width of the balanced layout (links per dag-pb node)."""
MAX_CHUNK_SIZE = 1_048_576
"""Kubo refuses chunkers above 1 MiB (a block must fit one Bitswap message)."""

CID_BYTES_LENGTH = 4 + SHA2_256_LENGTH
"""version, codec, hash code, digest length (one varint byte each), then the digest."""
MULTIBASE_BASE32 = "b"
CID_TEXT_LENGTH = 1 + 58
"""`b` + base32 of 36 bytes without padding (ceil(36 * 8 / 5) = 58 characters)."""

_BASE32_LOWER = re.compile(r"[a-z2-7]+")
_SUPPORTED_CODECS = (RAW_CODEC, DAG_PB_CODEC)

# UnixFS `Data.DataType` value for a file.
_UNIXFS_FILE_TYPE = 2


class InvalidCidError(ValueError):
    """A CID (text or bytes) that is malformed or not one of the shapes this system uses."""


@dataclass(frozen=True, slots=True)
class ContentId:
    """A CIDv1 with a sha2-256 multihash and the `raw` or `dag-pb` codec."""

    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.codec not in _SUPPORTED_CODECS:
            raise InvalidCidError(
                f"codec 0x{self.codec:x} is not supported (raw 0x55 or dag-pb 0x70 only)"
            )
        if not isinstance(self.digest, bytes) or len(self.digest) != SHA2_256_LENGTH:
            raise InvalidCidError("a sha2-256 digest is exactly 32 bytes")

    def to_bytes(self) -> bytes:
        """The binary CID (what an ANCHOR_RECORD carries in `cid`): 36 bytes."""
        return bytes((CID_VERSION, self.codec, SHA2_256_CODE, SHA2_256_LENGTH)) + self.digest

    def to_text(self) -> str:
        """The string form IPFS prints: `b` + base32 lowercase, no padding."""
        encoded = base64.b32encode(self.to_bytes()).decode("ascii").rstrip("=").lower()
        return MULTIBASE_BASE32 + encoded

    def __str__(self) -> str:
        return self.to_text()

    @classmethod
    def from_bytes(cls, data: bytes) -> ContentId:
        """Parse a binary CID; InvalidCidError unless it is exactly one supported CID."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidCidError("a binary CID must be bytes")
        data = bytes(data)
        if len(data) != CID_BYTES_LENGTH:
            raise InvalidCidError(
                f"a binary CID is {CID_BYTES_LENGTH} bytes here (CIDv1, sha2-256), got {len(data)}"
            )
        version, codec, hash_code, digest_length = data[:4]
        if version != CID_VERSION:
            # CIDv0 (base58 `Qm...`, binary 0x12 0x20 ...) is never produced with --cid-version=1.
            raise InvalidCidError(f"CID version {version} is not supported (CIDv1 only)")
        if hash_code != SHA2_256_CODE or digest_length != SHA2_256_LENGTH:
            raise InvalidCidError("only sha2-256 multihashes (0x12, 32 bytes) are supported")
        return cls(codec, data[4:])

    @classmethod
    def from_text(cls, text: str) -> ContentId:
        """Parse `b...` base32 text; InvalidCidError for any other form, case or padding."""
        if not isinstance(text, str):
            raise InvalidCidError("a CID text must be a string")
        if len(text) != CID_TEXT_LENGTH:
            raise InvalidCidError(
                f"a CID text is {CID_TEXT_LENGTH} characters here (b + base32), got {len(text)}"
            )
        if not text.startswith(MULTIBASE_BASE32):
            raise InvalidCidError("only base32 CIDs (multibase prefix 'b') are supported")
        body = text[1:]
        if not _BASE32_LOWER.fullmatch(body):
            raise InvalidCidError("a base32 CID uses only the characters a-z and 2-7")
        padded = body.upper() + "=" * (-len(body) % 8)
        try:
            decoded = base64.b32decode(padded)
        except ValueError:
            raise InvalidCidError("not valid base32") from None
        content_id = cls.from_bytes(decoded)
        # Reject texts whose unused trailing bits are set: they decode to the same bytes, so
        # accepting them would give one CID two spellings (and two file names in a store).
        if content_id.to_text() != text:
            raise InvalidCidError("not the canonical base32 spelling of this CID")
        return content_id


def cid_text_to_bytes(text: str) -> bytes:
    """Binary form of a CID text (validated)."""
    return ContentId.from_text(text).to_bytes()


def cid_bytes_to_text(data: bytes) -> str:
    """Text form of a binary CID (validated)."""
    return ContentId.from_bytes(data).to_text()


def raw_cid(data: bytes | memoryview) -> ContentId:
    """The CID of `data` as one raw block."""
    return ContentId(RAW_CODEC, hashlib.sha256(data).digest())


def compute_cid(
    data: bytes, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS
) -> ContentId:
    """The CID `ipfs add --cid-version=1 --raw-leaves` gives `data`.

    `chunk_size` and `max_links` exist to reproduce published vectors made with a smaller
    chunker; the defaults are Kubo's and every stored blob uses them.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")
    if max_links < 2:
        raise ValueError("max_links must be at least 2")
    view = memoryview(data)
    if len(view) <= chunk_size:
        # A single chunk (or no data at all) is its own root: the raw block.
        return raw_cid(view)
    level = [
        _DagEntry.leaf(view[offset : offset + chunk_size])
        for offset in range(0, len(view), chunk_size)
    ]
    # Grouping each level left to right into nodes of `max_links` builds the same tree as
    # Kubo's balanced builder: it fills a subtree completely before starting the next, and
    # adds a level whenever the root is full.
    while len(level) > 1:
        level = [
            _DagEntry.branch(level[start : start + max_links])
            for start in range(0, len(level), max_links)
        ]
    return level[0].content_id


def block_cids(data: bytes) -> list[ContentId]:
    """Every distinct block of `data`'s DAG as `compute_cid` builds it: the leaves, then each
    level of inner nodes up to the root (last). For a blob of one chunk: its raw block."""
    view = memoryview(data)
    if len(view) <= CHUNK_SIZE:
        return [raw_cid(view)]
    level = [
        _DagEntry.leaf(view[offset : offset + CHUNK_SIZE])
        for offset in range(0, len(view), CHUNK_SIZE)
    ]
    blocks = {entry.content_id: None for entry in level}
    while len(level) > 1:
        level = [
            _DagEntry.branch(level[start : start + MAX_LINKS])
            for start in range(0, len(level), MAX_LINKS)
        ]
        blocks.update({entry.content_id: None for entry in level})
    return list(blocks)


@dataclass(frozen=True, slots=True)
class _DagEntry:
    """A node of the file DAG as its parent links it."""

    content_id: ContentId
    cumulative_size: int
    """Link `Tsize`: bytes of this block plus all blocks below it."""
    file_size: int
    """File bytes under this node (the parent's `blocksizes` entry)."""

    @classmethod
    def leaf(cls, chunk: memoryview) -> _DagEntry:
        return cls(raw_cid(chunk), len(chunk), len(chunk))

    @classmethod
    def branch(cls, children: Sequence[_DagEntry]) -> _DagEntry:
        file_size = sum(child.file_size for child in children)
        unixfs_data = _encode_unixfs_file(file_size, [child.file_size for child in children])
        block = _encode_dag_pb_node(children, unixfs_data)
        content_id = ContentId(DAG_PB_CODEC, hashlib.sha256(block).digest())
        cumulative = len(block) + sum(child.cumulative_size for child in children)
        return cls(content_id, cumulative, file_size)


def _encode_dag_pb_node(links: Sequence[_DagEntry], unixfs_data: bytes) -> bytes:
    """PBNode: every link (field 2) first, then Data (field 1), as the dag-pb spec orders them."""
    parts: list[bytes] = []
    for link in links:
        # PBLink fields in order: Hash (1, bytes), Name (2, string), Tsize (3, varint). Kubo
        # always writes Name, as an empty string, for the links of a file.
        hash_bytes = link.content_id.to_bytes()
        encoded_link = (
            _field_bytes(1, hash_bytes)
            + _field_bytes(2, b"")
            + _field_varint(3, link.cumulative_size)
        )
        parts.append(_field_bytes(2, encoded_link))
    parts.append(_field_bytes(1, unixfs_data))
    return b"".join(parts)


def _encode_unixfs_file(file_size: int, block_sizes: Sequence[int]) -> bytes:
    """UnixFS `Data` of an inner file node: Type (1) = File, filesize (3), blocksizes (4).

    An inner node carries no bytes of its own, so field 2 (Data) is absent; `blocksizes` is a
    proto2 repeated field without `packed`, so each entry is its own tagged varint.
    """
    parts = [_field_varint(1, _UNIXFS_FILE_TYPE), _field_varint(3, file_size)]
    parts.extend(_field_varint(4, size) for size in block_sizes)
    return b"".join(parts)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


def _varint(value: int) -> bytes:
    """Unsigned LEB128, as both protobuf and multiformats' unsigned-varint use."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
