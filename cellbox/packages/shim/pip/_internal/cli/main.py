"""pip's console scripts (``pip3.11``, a path to the environment's own ``bin/pip``) run
``pip._internal.cli.main:cli`` (``main`` in older pips): in a context they are the shim too,
like ``pip`` and ``python -m pip`` (see :mod:`cellbox.packages.pip_command`)."""

from pip import main

cli = main
