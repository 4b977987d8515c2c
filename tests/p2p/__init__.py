"""Tests of the p2p layer (real TCP on 127.0.0.1)."""
