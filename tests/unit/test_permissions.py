"""The pure rules behind the store's file-mode checks: (mode, owner, group) -> refused or not."""

from __future__ import annotations

import os
import stat

import pytest

from loader.store.permissions import data_dir_problem, key_file_problem

ME, MY_GROUP = 1000, 1000


def st(mode: int, uid: int = ME, gid: int = MY_GROUP, kind: int = stat.S_IFREG) -> os.stat_result:
    return os.stat_result((kind | mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "refused"),
    [
        (0o600, ME, MY_GROUP, False),
        (0o400, ME, MY_GROUP, False),
        (0o640, ME, MY_GROUP, True),  # ssh: a key of ours has no group bits
        (0o620, ME, MY_GROUP, True),
        (0o604, ME, MY_GROUP, True),
        (0o700, ME, MY_GROUP, False),
        (0o710, ME, MY_GROUP, True),
        (0o440, 0, MY_GROUP, False),  # a Kubernetes Secret mounted for our fsGroup
        (0o460, 0, MY_GROUP, True),  # ... but not group-writable
        (0o444, 0, MY_GROUP, True),  # ... nor readable by others
        (0o440, 0, 4242, True),  # root's file for another group
        (0o440, 4242, MY_GROUP, True),  # another user's file
    ],
)
def test_key_file_rules(mode: int, uid: int, gid: int, refused: bool) -> None:
    problem = key_file_problem(st(mode, uid, gid), ME, MY_GROUP)
    assert (problem is not None) == refused, problem
    if problem:
        assert f"{mode:04o}" in problem


def test_root_gets_no_fs_group_exception() -> None:
    assert key_file_problem(st(0o440, 0, 0), 0, 0) is not None
    assert data_dir_problem(st(0o2770, 0, 0, stat.S_IFDIR), 0, 0) is not None


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "refused"),
    [
        (0o700, ME, MY_GROUP, False),
        (0o755, ME, MY_GROUP, False),  # readable is fine; ssh refuses only write
        (0o775, ME, MY_GROUP, True),
        (0o757, ME, MY_GROUP, True),
        (0o1777, ME, MY_GROUP, True),  # sticky /tmp-like: others can still plant files
        (0o2775, 0, MY_GROUP, False),  # a Kubernetes volume prepared for our fsGroup
        (0o2777, 0, MY_GROUP, False),  # an emptyDir with fsGroup
        (0o775, 0, MY_GROUP, True),  # group-writable without the fsGroup set-gid mark
        (0o2775, 0, 4242, True),  # another group
    ],
)
def test_data_dir_rules(mode: int, uid: int, gid: int, refused: bool) -> None:
    problem = data_dir_problem(st(mode, uid, gid, stat.S_IFDIR), ME, MY_GROUP)
    assert (problem is not None) == refused, problem
