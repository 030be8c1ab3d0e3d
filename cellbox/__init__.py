"""cellbox: a self-hosted code interpreter service."""

__version__ = "0.1.0"
