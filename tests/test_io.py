import json
import os

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


# -- issue 14, item 7: an output that cannot be written is found before any work
def test_check_writable(tmp_path, monkeypatch):
    from bertkit.errors import InputError
    from bertkit.io import check_writable

    check_writable(tmp_path / "out.npy")  # fine: nothing is left behind
    check_writable(tmp_path / "new" / "deeper" / "out.npy")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match=r"--output '.*out.npy' cannot be written: '.*f.txt' is a "
                                         r"file, not a folder"):
        check_writable(tmp_path / "f.txt" / "sub" / "out.npy")
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(InputError, match=r"--save '.*d.npy' is a folder; give a file name"):
        check_writable(tmp_path / "d.npy", "--save", kind="file")
    check_writable(tmp_path / "d.npy", kind="folder")
    with pytest.raises(InputError, match=r"is a file; give a folder"):
        check_writable(tmp_path / "f.txt", kind="folder")

    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # as a read-only folder would
    with pytest.raises(InputError, match=r"--output '.*out.npy' cannot be written in .*Permission "
                                         r"denied.*choose another path"):
        check_writable(tmp_path / "out.npy")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_check_writable_read_only_folder(tmp_path):
    from bertkit.errors import InputError
    from bertkit.io import check_writable

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot be written"):
            check_writable(ro / "out.npy")
    finally:
        ro.chmod(0o755)


def test_same_file_resolves_links_and_dots(tmp_path, monkeypatch):
    from bertkit.io import same_file

    (tmp_path / "a.parquet").write_text("x")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "a.parquet")
    monkeypatch.chdir(tmp_path)
    assert same_file("a.parquet", "./a.parquet")
    assert same_file("link.parquet", tmp_path / "a.parquet")
    assert same_file("a.parquet", "sub/../a.parquet")
    assert not same_file("a.parquet", "b.parquet")
