"""Run a program under the sandbox's seccomp filter: what namespaces and quotas miss.

- btrfs subvolumes. Work directories are btrfs subvolumes with a qgroup limit
  (``cellbox.sandbox.quota``). Any user may create a subvolume or snapshot in a directory it
  can write to, and set its own subvolume read-only: a nested subvolume is a qgroup of its
  own with no limit (the code could write past its quota without end), and a read-only work
  directory can no longer be emptied when its context is deleted. Those ``ioctl`` commands
  are refused.
- The kernel keyrings (``add_key``, ``request_key``, ``keyctl``) are not namespaced: keys
  count against one quota per uid, which every context shares, and their names show in every
  context's ``/proc/keys``. Refused, as container runtimes do.
- Kernel interfaces no interpreter needs, whose availability to unprivileged users is
  otherwise up to the host's sysctls, and which have been the way in for kernel exploits:
  ``bpf``, ``perf_event_open``, ``userfaultfd`` and ``io_uring`` (Node falls back to its
  thread pool without it). Refused, as container runtimes do.

Refused calls fail with ``EPERM``; every other system call goes through untouched.

Standalone (the standard library only, nothing of cellbox), so the sandbox chain runs it as
``python -I -S seccomp.py PROGRAM ARGS...`` in front of each sandboxed program: it installs
the filter (inherited by everything the program starts, across ``exec`` too) and execs the
program. On a machine it has no system call numbers for, it execs the program unfiltered.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

# (type << 8 | number) of the btrfs ioctls that make, delete or freeze subvolumes:
# SNAP_CREATE, SUBVOL_CREATE, SNAP_DESTROY, SNAP_CREATE_V2, SUBVOL_CREATE_V2,
# SUBVOL_SETFLAGS, SNAP_DESTROY_V2 (linux/btrfs.h); size and direction bits are ignored
REFUSED_IOCTLS = (0x9401, 0x940E, 0x940F, 0x9417, 0x9418, 0x941A, 0x943F)

# The refused calls by architecture: keyrings (add_key, request_key, keyctl), then bpf,
# perf_event_open, userfaultfd and io_uring (setup, enter, register).
_X86_64_REFUSED = (248, 249, 250, 321, 298, 323, 425, 426, 427)
_X32 = 0x40000000  # x32 calls are the x86-64 numbers with this bit, under the same arch
# audit arch -> (ioctl's numbers, the refused calls' numbers): native and 32-bit compat
_CALLS = {
    "x86_64": {
        0xC000003E: (
            (16, _X32 | 514),
            (*_X86_64_REFUSED, *(_X32 | n for n in _X86_64_REFUSED)),
        ),
        0x40000003: ((54,), (286, 287, 288, 357, 336, 374, 425, 426, 427)),
    },
    "aarch64": {
        0xC00000B7: ((29,), (217, 218, 219, 280, 241, 282, 425, 426, 427)),
        0x40000028: ((54,), (309, 310, 311, 386, 364, 388, 425, 426, 427)),
    },
}

# what GET /info says the filter refuses
REFUSED = (
    "btrfs subvolume and snapshot ioctls",
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring",
)

_LD_W_ABS = 0x20
_ALU_AND_K = 0x54
_JEQ_K = 0x15
_RET_K = 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_ARCH, _NR, _CMD = 4, 0, 24  # offsets in struct seccomp_data; the command's low 32 bits

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def program(machine: str) -> bytes | None:
    """The classic BPF program for ``machine`` (``platform.machine()``), or None."""
    arches = _CALLS.get(machine)
    if arches is None:
        return None
    # (code, jump-if-true label, jump-if-false label, k); labels resolved below
    code: list[tuple[int, str | None, str | None, int]] = [(_LD_W_ABS, None, None, _ARCH)]
    for arch in arches:
        code.append((_JEQ_K, f"arch{arch}", None, arch))
    code.append((_RET_K, None, None, _ALLOW))
    labels: dict[str, int] = {}
    for arch, (ioctls, refused) in arches.items():
        labels[f"arch{arch}"] = len(code)
        code.append((_LD_W_ABS, None, None, _NR))
        code += [(_JEQ_K, "command", None, number) for number in ioctls]
        code += [(_JEQ_K, "refuse", None, number) for number in refused]
        code.append((_RET_K, None, None, _ALLOW))
    labels["command"] = len(code)
    code += [(_LD_W_ABS, None, None, _CMD), (_ALU_AND_K, None, None, 0xFFFF)]
    code += [(_JEQ_K, "refuse", None, command) for command in REFUSED_IOCTLS]
    code.append((_RET_K, None, None, _ALLOW))
    labels["refuse"] = len(code)
    code.append((_RET_K, None, None, _ERRNO | errno.EPERM))

    def skip(at: int, label: str | None) -> int:
        return 0 if label is None else labels[label] - at - 1

    return b"".join(
        struct.pack("=HBBI", op, skip(at, yes), skip(at, no), k)
        for at, (op, yes, no, k) in enumerate(code)
    )


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install() -> bool:
    """Put the filter on this process (and all it starts); False where there is none."""
    filters = program(platform.machine())
    if filters is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    prog = _Program(len(filters) // 8, filters)
    for option, arg, pointer in (
        (_PR_SET_NO_NEW_PRIVS, 1, None),
        (_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog)),
    ):
        if libc.prctl(option, arg, pointer, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return True


if __name__ == "__main__":
    install()
    os.execvp(sys.argv[1], sys.argv[1:])
