# The batch arguments' check, declared once for the compiled core's modules (the reference
# twin's is `reference/items.py`: same snapshot, same TypeError).

from cpython.bytes cimport PyBytes_Check


cdef inline tuple checked_bytes(object items, str what):
    """Snapshot `items` as a tuple (it also keeps the buffers alive) of bytes objects."""
    cdef tuple snapshot = tuple(items)
    cdef Py_ssize_t position
    for position in range(len(snapshot)):
        if not PyBytes_Check(snapshot[position]):
            raise TypeError(
                f"{what} {position} is {type(snapshot[position]).__name__}, not bytes")
    return snapshot
