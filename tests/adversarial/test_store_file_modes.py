"""The store refuses a master key others could read or change and a data directory others could
write, like ssh (issue 13, item 9): one line naming the path and the mode, exit 78, no traceback,
before anything is served or changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.procs import LOADER, init_store, run_loader, spawn, wait_for_line

EX_CONFIG = 78


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "store"
    init_store(data)
    return data


def _refused(out: object, *needles: str) -> None:
    rc, stderr = out.returncode, out.stderr.decode()  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert rc == EX_CONFIG, stderr
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _serve(data: Path) -> object:
    return run_loader(
        "store", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0", timeout=30
    )


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o660, 0o604, 0o610])
def test_serve_refuses_a_master_key_open_to_group_or_others(data: Path, mode: int) -> None:
    key = data / "master.key"
    key.chmod(mode)
    _refused(_serve(data), str(key), f"{mode:04o}")


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o720, 0o702, 0o1777])
def test_serve_refuses_a_data_directory_others_can_write(data: Path, mode: int) -> None:
    data.chmod(mode)
    _refused(_serve(data), str(data), "writable")


@pytest.mark.parametrize(
    "command",
    [
        ["rotate-key", "--new-key-file", "NEW"],
        ["remove-key", "k0000000000"],
        ["init"],
    ],
)
def test_other_commands_that_open_the_key_refuse_too(
    data: Path, tmp_path: Path, command: list[str]
) -> None:
    before = sorted((p.name, p.stat().st_size) for p in data.iterdir())
    key = data / "master.key"
    key.chmod(0o640)
    args = [a.replace("NEW", str(tmp_path / "new.key")) for a in command]
    _refused(run_loader("store", *args, "--data-dir", str(data)), str(key))
    key.chmod(0o600)
    data.chmod(0o775)
    _refused(run_loader("store", *args, "--data-dir", str(data)), str(data))
    data.chmod(0o700)
    assert sorted((p.name, p.stat().st_size) for p in data.iterdir()) == before
    assert not (tmp_path / "new.key").exists()


def test_a_private_key_and_directory_are_accepted(data: Path) -> None:
    """The control: 0600 key in a 0750 directory (group may list, not write) is served."""
    data.chmod(0o750)
    (data / "master.key").chmod(0o400)
    new_key = data / "new.key"
    out = run_loader("store", "rotate-key", "--data-dir", str(data), "--new-key-file", str(new_key))
    assert out.returncode == 0, out.stderr
    assert os.stat(new_key).st_mode & 0o077 == 0


POD_UID = 65532  # the chart's runAsUser, runAsGroup and fsGroup


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_kubernetes_fs_group_volume_is_accepted_and_nothing_looser(tmp_path: Path) -> None:
    """As the kubelet leaves them for a pod with fsGroup 65532: the master key Secret root-owned
    0440 with group 65532, the data volume root-owned 2775 with group 65532. The store, run as
    65532 (not root), serves; the same key readable by others, or the volume without the
    fsGroup marks, is refused."""
    base = Path(tempfile.mkdtemp(prefix="fsgroup-"))
    try:
        base.chmod(0o755)
        data, keys = base / "data", base / "keys"
        keys.mkdir()
        init_store(data)
        key = keys / "master.key"
        (data / "master.key").rename(key)
        for path, mode in ((keys, 0o755), (key, 0o440), (data, 0o2775)):
            os.chown(path, 0, POD_UID)
            path.chmod(mode)
        for path in data.iterdir():
            os.chown(path, POD_UID, POD_UID)
        argv = [
            "setpriv",
            f"--reuid={POD_UID}",
            f"--regid={POD_UID}",
            "--clear-groups",
            # Only to import loader from a checkout this uid may not traverse (a mktemp -d clone):
            # reading is all it grants; the store's checks look at owners and modes, not access.
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            *LOADER,
            "store",
            "serve",
            "--data-dir",
            str(data),
            "--master-key-file",
            str(key),
        ]
        store = spawn([*argv, "--listen", "127.0.0.1:0"], base / "store.log")
        try:
            wait_for_line(store, r"listening on (http://\S+)")
        finally:
            store.stop()
        key.chmod(0o444)
        _refused(subprocess.run(argv, check=False, capture_output=True, timeout=30), "0444")
        key.chmod(0o440)
        data.chmod(0o775)  # group-writable, but not as the kubelet leaves an fsGroup volume
        _refused(subprocess.run(argv, check=False, capture_output=True, timeout=30), "0775")
    finally:
        shutil.rmtree(base, ignore_errors=True)
