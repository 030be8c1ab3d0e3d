"""Every Python process of a context: its own site directory first (see python_path).

``python_path`` is loaded from its file, not imported as part of ``cellbox``: another
interpreter of the system (``/usr/bin/python3``, a script whose first line names it) has no
``cellbox`` to import, and the module needs only the standard library.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_cellbox_python_path",
    os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "python_path.py"),
)
if _spec is not None and _spec.loader is not None:
    _python_path = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_python_path)
    _python_path.activate()
