"""Another user's private runs, for the listing tests: a test user, and root without its
power to read every file.

Root reads any folder (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a test that runs as root
adds a test user, gives it a run folder (0700) and a run.json (0600), and lists with those two
capabilities dropped from this thread's effective set: the kernel then checks the modes as it
would for any other user. Threads started meanwhile (the app's workers) inherit the drop.
Elsewhere (not root, or no way to add a user) the tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cockpit import rundir
from cockpit.plan.presets import Preset

TEST_USER = "cockpit-test"
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def the_test_user() -> pwd.struct_passwd:
    """The unprivileged test user, added once (useradd) when missing; skips where it cannot be."""
    if os.geteuid() != 0 or not os.path.exists("/proc/self/status"):
        pytest.skip("needs root on Linux: to add a test user and to list without root's reach")
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.skip("no useradd on this machine to add a test user")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
        capture_output=True,
        check=False,
    )  # a concurrent test may have added it first: look it up again either way
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pytest.skip(f"could not add the test user {TEST_USER}")


@contextlib.contextmanager
def as_another_user() -> Iterator[None]:
    """Root's file-reading capabilities dropped from this thread's effective set meanwhile."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip(f"capget failed: {os.strerror(ctypes.get_errno())}")
    saved = data[0].effective
    data[0].effective = saved & ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip(f"capset failed: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)


def make_runs(root: Path, user: pwd.struct_passwd) -> tuple[list[Path], Path, Path]:
    """Two readable runs; a run folder private to `user` (0700) and one whose run.json is (0600)."""
    readable = []
    for name in ("alpha", "beta"):
        run_dir = rundir.create_run_dir(Preset(name=name), root=root)
        rundir.update_run_info(run_dir, status="finished", step=3)
        (run_dir / rundir.EVENTS_JSONL).write_text(
            '{"v":1,"event":"start","time":1.0,"step":0}\n'
            '{"v":1,"event":"step","time":2.0,"step":3,"loss":2.5}\n'
            '{"v":1,"event":"end","time":3.0,"step":3,"reason":"finished"}\n'
        )
        readable.append(run_dir)
    private = rundir.create_run_dir(Preset(name="private"), root=root)
    for path in (private, *private.iterdir()):
        os.chown(path, user.pw_uid, user.pw_gid)
    private.chmod(0o700)
    closed = rundir.create_run_dir(Preset(name="closed"), root=root)
    os.chown(closed / rundir.RUN_JSON, user.pw_uid, user.pw_gid)
    (closed / rundir.RUN_JSON).chmod(0o600)
    return readable, private, closed
