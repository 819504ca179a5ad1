"""The private runtime of the lightning-viz callbacks (no public API)."""
