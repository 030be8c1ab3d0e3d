"""The seccomp filter of the sandbox chain: btrfs subvolume ioctls, the kernel keyrings,
bpf, perf_event_open, userfaultfd and io_uring get EPERM, the rest passes.

Run on any file system: without the filter, a btrfs ioctl on a directory elsewhere fails
with ENOTTY (not a btrfs directory); under it, the filter answers EPERM before the kernel
looks at the file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cellbox.sandbox import seccomp
from cellbox.sandbox.launchers.bwrap import SECCOMP_EXEC

PROBE = """
import errno, fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
out = []
for command in (0x5000940E, 0x50009401, 0x5000941A & 0xFFFF | 0x40080000, 0x9418 | 0x50000000):
    try:
        fcntl.ioctl(fd, command, bytearray(4096))
    except OSError as e:
        out.append(errno.errorcode[e.errno])
try:  # FICLONE (a reflink copy) is no subvolume: the kernel still answers it
    fcntl.ioctl(fd, 0x40049409, struct.pack('i', fd))
except OSError as e:
    out.append(errno.errorcode[e.errno])
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
calls = {
    248: (b'user', b'k', b'v', 1, -4),  # add_key to the user keyring
    250: (0, -4, 0),  # keyctl(KEYCTL_GET_KEYRING_ID)
    425: (4, params),  # io_uring_setup
}
for number, args in calls.items():
    fd = libc.syscall(number, *args)
    out.append(errno.errorcode[ctypes.get_errno()] if fd < 0 else 'done')
print(' '.join(out))
"""


def _probe(tmp: str, wrapped: bool) -> list[str]:
    argv = [*SECCOMP_EXEC] if wrapped else []
    done = subprocess.run(
        [*argv, sys.executable, "-c", PROBE, tmp], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_filter_refuses_what_it_lists_only(tmp_path: Path) -> None:
    assert seccomp.program("x86_64") is not None and seccomp.program("mips") is None
    plain = _probe(str(tmp_path), wrapped=False)
    assert "EPERM" not in plain[:4]  # ENOTTY and the like: no btrfs here
    filtered = _probe(str(tmp_path), wrapped=True)
    assert filtered[:4] == ["EPERM"] * 4
    assert filtered[4] == plain[4] != "EPERM"
    assert plain[5:] == ["done"] * 3 and filtered[5:] == ["EPERM"] * 3
