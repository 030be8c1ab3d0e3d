"""``python -m pip`` in a context: see :mod:`cellbox.packages.pip_command`."""

from __future__ import annotations


def main(args: list[str] | None = None) -> int:
    """``pip.main([...])``, as old code calls it."""
    import sys

    from cellbox.packages.pip_command import pip_main

    return pip_main(list(sys.argv[1:] if args is None else args))
