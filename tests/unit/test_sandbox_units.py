"""A unit's bookkeeping and the launcher choice's figures, without starting anything.

The cgroup tree here is a plain directory: the real :class:`Cgroups` logic (create, kill,
the OOM counter) runs on it; only the kernel's side (limits, freezing) is left out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cellbox.sandbox.cgroups import Cgroups
from cellbox.sandbox.launcher_choice import joined_failure, setup_figures
from cellbox.sandbox.policy import Limits, SandboxError
from cellbox.sandbox.units import OOM_RECORDS, Units, instance_name
from cellbox.sandbox.workdirs import StateLayout


class DirectoryTree(Cgroups):
    """A cgroup v2 tree as plain directories: a unit's OOM count is in memory.events."""

    version = 2
    memory = True
    pids = True

    def setup(self) -> None:
        for parent in self.parents.values():
            parent.mkdir(parents=True, exist_ok=True)

    def _limit(self, name: str, path: Path, limits: Limits) -> None:
        (path / "memory.max").write_text(str(limits.memory_bytes))

    def _join_file(self, path: Path) -> Path:
        return path / "cgroup.procs"

    def _oom_file(self, unit: str) -> Path:
        return self.parents["unified"] / unit / "memory.events"

    def _freeze(self, unit: str) -> tuple[Path, str] | None:
        return None

    def remove(self, unit: str) -> None:  # cgroupfs removes a cgroup with its files
        for path in self.dirs(unit).values():
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def units(tmp_path: Path) -> Units:
    layout = StateLayout(tmp_path / "state")
    layout.make(root=False, user="nobody", uid=65534, gid=65534)
    found = Units(layout, Limits(memory_bytes=64 << 20), enabled=True)
    found.cgroups = DirectoryTree({"unified": tmp_path / "cgroup"})
    found.cgroups.setup()
    return found


def _oom_kill(units: Units, unit: str) -> None:
    assert units.cgroups is not None
    (units.cgroups.dirs(unit)["unified"] / "memory.events").write_text("oom 1\noom_kill 1\n")


def test_prepare_makes_the_cgroup_with_its_limit_and_join_file(units: Units) -> None:
    joins = units.prepare("ctx-a")
    assert [path.name for path in joins] == ["cgroup.procs"]
    assert (joins[0].parent / "memory.max").read_text() == str(64 << 20)


def test_prepare_replaces_a_leftover_cgroup_of_the_same_name(units: Units) -> None:
    units.prepare("ctx-a")
    _oom_kill(units, "ctx-a")
    units.prepare("ctx-a")
    assert not units.oom_killed("ctx-a")  # a fresh cgroup, no old verdict


def test_an_oom_kill_is_remembered_after_release_removed_the_cgroup(units: Units) -> None:
    units.prepare("ctx-a")
    units.prepare("ctx-b")
    _oom_kill(units, "ctx-a")
    units.release("ctx-a")
    units.release("ctx-b")
    assert units.cgroups is not None and units.cgroups.units() == set()
    assert units.oom_killed("ctx-a")
    assert not units.oom_killed("ctx-b")
    units.prepare("ctx-a")  # the name starts a new unit: the old verdict is gone
    assert not units.oom_killed("ctx-a")


def test_release_takes_bad_names_and_unknown_units_quietly(units: Units) -> None:
    units.release("../escape")
    units.release("never-started")
    assert not units.oom_killed("../escape")
    assert not units.oom_killed("never-started")


def test_oom_records_are_bounded(units: Units) -> None:
    units.prepare("first")
    _oom_kill(units, "first")
    units.release("first")
    units.kill_tagged = False  # a private pid namespace: no scan of every process each time
    for n in range(OOM_RECORDS):
        units.release(f"u{n}")
    assert not units.oom_killed("first")  # the older half went


def test_release_all_releases_registered_and_cgroup_units(units: Units) -> None:
    assert units.cgroups is not None
    units.prepare("mine")
    units.cgroups.create("left-by-a-killed-server", units.limits)
    units.release_all()
    assert units.cgroups.units() == set()


def test_a_cgroup_that_cannot_be_made_is_a_sandbox_error(units: Units) -> None:
    assert units.cgroups is not None
    units.cgroups.parents = {"unified": units.layout.state_dir / "no" / "such" / "tree"}
    units.cgroups.setup = lambda: None  # the parent stays missing
    with pytest.raises(SandboxError, match="cannot create cgroups for ctx-a"):
        units.prepare("ctx-a")


def test_unit_rlimits_follow_the_controllers_the_tree_has(units: Units) -> None:
    with_cgroups = units.rlimits(65534)
    assert "data" not in with_cgroups and "nproc" not in with_cgroups
    units.cgroups = None
    without = units.rlimits(65534)
    assert "data" in without and "nproc" in without


def test_instance_names_tell_state_directories_apart() -> None:
    name = instance_name(Path("/var/lib/cellbox"))
    assert len(name) == 12 and int(name, 16) >= 0
    assert name == instance_name(Path("/var/lib/cellbox"))
    assert name != instance_name(Path("/var/lib/cellbox-2"))


def test_joined_failure_names_a_repeated_error_once() -> None:
    assert joined_failure("no userns", "no userns") == "no userns"
    assert joined_failure("no userns", "bad --size") == "no userns; bad --size"


def test_setup_figures_compare_the_best_runs() -> None:
    figures = setup_figures([12.3, 10.04], [4.0, 3.52])
    assert figures == {"sandboxed_start_ms": 10.0, "direct_start_ms": 3.5, "overhead_ms": 6.5}
