"""Which requirements of a ``pip install`` the shared environment already satisfies.

``pip install numpy pandas`` in a context whose shared environment has both is what pip
calls "Requirement already satisfied": nothing is installed. The shim keeps such packages
out of uv's resolution like every unnamed shared one, instead of copying them into the
context (hundreds of MB against its disk quota, a second copy that shadows the first, and
a fresh interpreter at every restart). A requirement the shared version does not meet
(``pandas==2.2.3``, ``numpy<2``), one with extras or a URL, one the context installed a
version of itself, and an upgrade or reinstall (``-U``, ``--force-reinstall``, ``-P x``)
still install into the context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cellbox.packages.pip_args import UPGRADE_ALL, normalize


def already_satisfied(
    specs: Iterable[str],
    args: Iterable[str],
    shared: Mapping[str, str],
    own: Iterable[str] = (),
    forced: Iterable[str] = (),
) -> dict[str, str]:
    """Normalized name -> shared version, for each named package that needs nothing.

    ``specs``: the command's requirement strings; ``args``: its options (uv's spelling);
    ``shared``: the shared environment's versions by normalized name; ``own``: names the
    context's own site directory holds; ``forced``: names to upgrade or reinstall.
    """
    if UPGRADE_ALL & set(args):
        return {}
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.version import InvalidVersion, Version
    except ImportError:  # the context shadowed packaging with something unusable
        return {}
    met: dict[str, str] = {}
    unmet = set(own) | set(forced)
    for spec in specs:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue  # a path or something uv parses itself
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this interpreter: uv leaves it out itself
        name = normalize(requirement.name)
        version = shared.get(name)
        try:
            meets = (
                version is not None
                and not requirement.url
                and not requirement.extras
                and requirement.specifier.contains(Version(version), prereleases=True)
            )
        except InvalidVersion:
            meets = False
        if meets and version is not None:
            met[name] = version
        else:
            unmet.add(name)
    return {name: version for name, version in met.items() if name not in unmet}
