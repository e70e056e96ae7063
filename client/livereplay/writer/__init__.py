"""The runtime's writer: a local window that never blocks, shipped by one background sender."""
