"""The reference twin of the compiled core: the same names, results and exceptions in plain
Python, the readable statement each compiled module is tested against (`tests/core`). Loaded by
`emrchain._core` when ``EMRCHAIN_PUREPYTHON=1`` or the extensions are missing."""
