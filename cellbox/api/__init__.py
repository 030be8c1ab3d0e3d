"""The HTTP API of cellbox."""
