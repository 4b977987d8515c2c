"""State sync: snapshots of the committed state that the validators vouch for, and a new node
joining from one (docs/spec/statesync.md)."""
