"""Deterministic simulator of emrchain consensus: faults, byzantine validators, checkers."""
