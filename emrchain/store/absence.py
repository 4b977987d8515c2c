"""Which committed state keys certainly do not exist, for keyspaces looked up mostly for keys
never written: every ANCHOR_RECORD asks whether its new record id is taken.

Why: such a lookup misses, and a miss searches LevelDB's memtable skiplist and a table per
level (~3.5–5 µs on a busy node; 11 % of a follower's event loop at max rate, BENCHMARKS.md).
A Bloom filter over the keys present answers most misses in ~0.3 µs without the database.

Exactness: a Bloom filter has false positives (then the database is read, as before) and never
false negatives, provided every key present is in it. The store fills it from the database
when it opens, and adds every key its commits and genesis put under the covered prefixes once
the write is durable; a deleted key stays in it (a false positive). So the filter only ever
skips reads whose answer is "absent", and no result changes.

The filter is in the compiled core (`_core/_absence.pyx`, with its pure twin
`_core/reference/absence.py`): in Python, adding a key cost ~1 µs and a lookup ~0.3 µs, on the
event loop for every anchored record.

Hashing uses Python's `hash()` of the key, which is keyed randomly per process (SipHash), so a
client cannot choose record ids that collide in every node's filter; the filter is rebuilt at
every start. Size: a power of two bytes from `[storage] absence_filter_bytes`; with 4 probes
in one cache line it answers ~99.7 % of misses while it holds at most size × 8 / 16 keys, and
degrades gradually (never wrongly) beyond.
"""

from __future__ import annotations

from emrchain._core import AbsenceFilter

__all__ = ["AbsenceFilter"]
