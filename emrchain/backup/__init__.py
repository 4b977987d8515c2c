"""Encrypted backups of a node home, their verification and restore (docs/spec/backup.md)."""
