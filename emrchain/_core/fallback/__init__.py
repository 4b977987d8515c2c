"""Pure-Python twins of the compiled core modules (same names, results and exceptions)."""
