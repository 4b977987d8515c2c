"""Tests of the compiled core and its pure-Python twin."""
