"""The path rules (loader.fsguard) as tables: which directories may hold or feed secrets, which
names are credentials."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from loader.credentials import is_credential, without_credentials
from loader.errors import ConfigError
from loader.fsguard import directory_problem, read_token_file

ME = os.geteuid()
OTHER_UID = 65534 if ME != 65534 else 65533


def dir_stat(mode: int, uid: int = ME, gid: int | None = None) -> os.stat_result:
    if gid is None:
        gid = os.getegid() if uid == ME else uid
    return os.stat_result((stat.S_IFDIR | mode, 1, 1, 2, uid, gid, 4096, 0, 0, 0))


@pytest.mark.parametrize(
    ("st", "read_only", "problem"),
    [
        (dir_stat(0o700), False, None),
        (dir_stat(0o755), False, None),
        (dir_stat(0o1777, uid=0, gid=0), False, None),  # /dev/shm, a memory emptyDir
        (dir_stat(0o3777, uid=0, gid=0), False, None),  # ... with an fsGroup
        (dir_stat(0o777, uid=0, gid=0), True, None),  # a ConfigMap volume: mounted read-only
        (dir_stat(0o777), False, "writable by other users and not sticky"),
        (dir_stat(0o2777, uid=0, gid=0), False, "writable by other users and not sticky"),
        (dir_stat(0o775, uid=0, gid=65534), False, "writable by other users and not sticky"),
        (dir_stat(0o1777, uid=OTHER_UID), False, f"owned by uid {OTHER_UID}"),
        (dir_stat(0o700, uid=OTHER_UID), False, f"owned by uid {OTHER_UID}"),
        (os.stat_result((stat.S_IFREG | 0o600, 1, 1, 1, ME, 0, 0, 0, 0, 0)), False, "not a dir"),
    ],
)
def test_directory_problem(st: os.stat_result, read_only: bool, problem: str | None) -> None:
    found = directory_problem(st, read_only)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_group_writable_directory_of_the_owners_own_group_is_fine() -> None:
    """ssh's rule: root's group root has no other members (user private groups likewise)."""
    assert directory_problem(dir_stat(0o775, uid=0, gid=0), False) is None


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("LOADER_TOKEN", True),
        ("loader_token", True),  # settings are read in any case
        ("LOADER_TOKEN_FILE", True),
        ("LOADER_CLIENT_SECRET", True),
        ("LOADER_DATABASE_URL", True),
        ("LOADER_DATABASE_URL_FILE", True),  # where the URL is: as good as the URL
        ("loader_database_url_file", True),
        ("LOADER_MASTER_KEY_FILE", True),
        ("LOADER_JWT_FILE", True),  # the workload's JWT: traded for access at the store
        ("LOADER_AUTH", False),
        ("LOADER_DATA_DIR", False),
        ("LOADER_DB_PASSWORD", True),
        ("LOADER_AGENT_URL", False),
        ("LOADER_APP", False),
        ("LOADER_LOG_LEVEL", False),
        ("GITHUB_TOKEN", False),  # the app's own variables are not ours to drop
        ("TOKEN", False),
    ],
)
def test_is_credential(name: str, credential: bool) -> None:
    assert is_credential(name) is credential


def test_without_credentials_keeps_the_rest() -> None:
    env = {"PATH": "/bin", "LOADER_TOKEN": "t", "LOADER_APP": "1", "HOME": "/root"}
    assert without_credentials(env) == {"PATH": "/bin", "LOADER_APP": "1", "HOME": "/root"}


@pytest.mark.parametrize(
    ("content", "mode", "outcome"),
    [
        (b"lt_abc_def\n", 0o600, "lt_abc_def"),
        (b"  eyJhbGciOi.x.y  \r\n", 0o644, "eyJhbGciOi.x.y"),  # a projected token, 0644
        (b"\n \n", 0o600, "is empty"),
        (b"lt_abc", 0o666, "writable by other users"),
        (b"x" * (64 * 1024 + 1), 0o600, "larger than 64 KiB"),
        (None, 0o600, "No such file or directory"),
    ],
)
def test_read_token_file(tmp_path: Path, content: bytes | None, mode: int, outcome: str) -> None:
    """The one token-file reader of the agent, ``loader run`` and the management commands."""
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    if outcome.startswith(("lt_", "eyJ")):
        assert read_token_file(path) == outcome
        return
    with pytest.raises(ConfigError) as info:
        read_token_file(path)
    assert outcome in info.value.message
    assert "\n" not in info.value.message


def test_read_token_file_never_shows_a_token_typed_as_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_token_file(tmp_path / "lt_0123456789ab_secretpart")
    assert "secretpart" not in info.value.message
