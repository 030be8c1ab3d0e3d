"""Hostile cases of the sandbox and the network found by an adversarial audit.

The code may not make btrfs subvolumes or snapshots in its work directory (each would be a
qgroup of its own, outside its disk quota), make its work directory read-only (it could then
not be emptied when the context is deleted), nor use the kernel keyrings (one quota per uid
for all contexts, names visible to all) or io_uring.

A name on an allowlist that resolves to the host or an internal range must not open it (the
denials are checked by reading the rules installed in the context's namespace, never by
sending packets there).
"""

from __future__ import annotations

import pytest

from cellbox.sandbox import seccomp
from cellbox.sandbox.netpolicy import DENIED_V4, parse, ruleset
from tests.conftest import Client
from tests.security.conftest import worker_host_pid
from tests.security.test_network import _ruleset


def _chain(script: str) -> list[str]:
    """The rules of the output chain, as written or as ``nft list`` shows them."""
    lines = [line.strip() for line in script.split("chain output {", 1)[1].splitlines()]
    return lines[: lines.index("}")]


def test_resolved_addresses_are_accepted_only_after_the_denials() -> None:
    chain = _chain(ruleset(parse({"allow": ["a.example", "198.51.100.0/24"]}), ["192.0.2.2"]))
    listed = chain.index("ip daddr @allowed4 accept")
    denied = next(i for i, line in enumerate(chain) if all(r in line for r in DENIED_V4))
    resolved = chain.index("ip daddr @resolved4 accept")
    assert listed < denied < resolved and "192.0.2.2" in chain[denied]
    assert chain.index("ip6 daddr @allowed6 accept") < chain.index("ip6 daddr @resolved6 accept")


def test_an_allowlisted_name_opens_only_its_public_addresses(client: Client) -> None:
    allow = {"allow": ["pypi.org", "198.51.100.0/24"]}
    ctx = client.context("python", network=allow)
    try:
        looked_up = client.run("import socket; socket.gethostbyname('pypi.org')", context_id=ctx)
        assert looked_up["error"] is None, looked_up
        address = looked_up["items"][0]["text"].strip("'")
        rules = _ruleset(worker_host_pid(client, ctx))
        chain = _chain(rules)
        denial = next(i for i, line in enumerate(chain) if "127.0.0.0/8" in line)
        assert chain.index("ip daddr @allowed4 accept") < denial
        assert denial < chain.index("ip daddr @resolved4 accept")
        sets = {
            name: rules.split(f"set {name} {{", 1)[1].split("\n\t}", 1)[0]
            for name in ("allowed4", "resolved4")
        }
        assert address in sets["resolved4"] and address not in sets["allowed4"]
        assert "198.51.100.0/24" in sets["allowed4"]
    finally:
        client.delete(f"/contexts/{ctx}")


# The btrfs ioctls by hand (linux/btrfs.h), as a program would call them.
SUBVOLUMES = """
import fcntl, os, struct
out = {}
def call(name, command, args):
    fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, command, args); out[name] = 'done'
    except OSError as e:
        out[name] = e.errno
    finally:
        os.close(fd)
vol = lambda fd, name: bytearray(struct.pack('q4088s', fd, name))
top = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
call('subvolume', (1 << 30) | (4096 << 16) | 0x940E, vol(0, b'nested'))
call('snapshot', (1 << 30) | (4096 << 16) | 0x9401, vol(top, b'snap'))
call('snapshot v2', (1 << 30) | (4096 << 16) | 0x9417, vol(top, b'snap2'))
call('read-only', (1 << 30) | (8 << 16) | 0x941A, struct.pack('Q', 2))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
added = libc.syscall(248, b'user', b'cellbox-probe', b'v', 1, -4)  # add_key to @u
out['keyring'] = 'done' if added >= 0 else ctypes.get_errno()
ring = libc.syscall(425, 4, ctypes.create_string_buffer(120))  # io_uring_setup
out['io_uring'] = 'done' if ring >= 0 else ctypes.get_errno()
open('still-writable', 'w').write('x')
print(out, sorted(os.listdir('.')))
"""


def test_info_says_what_the_filter_refuses(client: Client) -> None:
    report = client.get("/info").json()["isolation"]["seccomp"]
    assert report == {"enforced": True, "refused": list(seccomp.REFUSED)}
    assert "io_uring" in report["refused"] and "keyctl" in report["refused"]


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_no_subvolume_snapshot_or_read_only_work_directory(client: Client, language: str) -> None:
    ctx = client.context(language)
    cwd = client.get(f"/contexts/{ctx}").json()["cwd"]
    try:
        if language == "python":
            code = SUBVOLUMES
        else:  # a Python child of the TypeScript worker: the filter is inherited
            script = SUBVOLUMES.replace("\\", "\\\\").replace("`", "\\`")
            code = (
                "const { execFileSync } = require('child_process');\n"
                f"process.stdout.write(execFileSync('python3', ['-c', `{script}`]).toString())"
            )
        result = client.run(code, context_id=ctx, language=language)
        assert result["error"] is None, result
        printed = "".join(result["logs"]["stdout"])
        eperm = 1
        expected = {"subvolume": eperm, "snapshot": eperm, "snapshot v2": eperm}
        expected |= {"read-only": eperm, "keyring": eperm, "io_uring": eperm}
        assert printed.startswith(repr(expected)), printed
        assert "['still-writable']" in printed
        assert client.put(f"/contexts/{ctx}/files/up.txt", content=b"u").status_code == 200
    finally:
        client.delete(f"/contexts/{ctx}")
    assert not __import__("os").path.exists(cwd)
