"""Client-side code: what a member's application does before anything reaches a node."""
