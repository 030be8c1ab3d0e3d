"""Launch strategies side by side; the sandbox picks one per server from the capabilities."""

from cellbox.sandbox.launchers.base import Launcher, UnitSetup
from cellbox.sandbox.launchers.bwrap import BwrapLauncher
from cellbox.sandbox.launchers.direct import DirectLauncher
from cellbox.sandbox.launchers.uid import UidLauncher
from cellbox.sandbox.launchers.zygote import ZygoteLauncher

__all__ = [
    "BwrapLauncher",
    "DirectLauncher",
    "Launcher",
    "UidLauncher",
    "UnitSetup",
    "ZygoteLauncher",
]
