"""Every Python process of a context: its own site directory first (see python_path)."""

from cellbox.packages.python_path import activate

activate()
