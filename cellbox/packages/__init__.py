"""Packages in contexts: each context installs into its own directory, through ``uv``.

The server's environment (the data stack and cellbox itself) is mounted read-only in every
sandbox. Each context gets, inside its own work directory (so its disk quota covers it):

- ``.cellbox/python``: a site directory placed ahead of the shared site-packages, so what
  the context installs is importable at once and shadows a preinstalled version;
- ``.cellbox/cache``: uv's and npm's caches, private to the context;
- ``node_modules`` where ``npm install`` is run (the work directory by default).

Inside the sandbox, ``pip``/``pip3``/``uv`` on ``PATH`` and ``python -m pip`` lead to
:mod:`cellbox.packages.pip_command`, which runs ``uv pip install --target`` as the
context's user, under its limits and network policy. A wheel cache that only the server
fills (from the registry, never from a context) is mounted read-only into every context:
see :mod:`cellbox.packages.wheelhouse`.

Modules: :mod:`layout` (server side: paths and environment of a context),
:mod:`python_path`, :mod:`pip_command`, :mod:`pip_args` and :mod:`pip_config` (run inside
the sandbox), :mod:`wheelhouse`
(the trusted cache) and :mod:`creation` (``packages`` at ``POST /contexts``).
"""
