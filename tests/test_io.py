import json

import pytest

from bertkit.io import atomic_dir, atomic_path, write_json


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_write_json_numpy(tmp_path):
    import numpy as np

    write_json(tmp_path / "m.json", {"x": np.arange(3), "y": np.float32(0.5)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": [0, 1, 2], "y": 0.5}


def test_atomic_path_gives_normal_file_mode(tmp_path):
    import os

    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    assert os.stat(tmp_path / "f.txt").st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
