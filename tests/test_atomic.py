"""kdviz.atomic.atomic_write: the whole new content or the old file, never half, never a stray temp file."""

import pytest

from kdviz.atomic import atomic_write


def test_writes_text_bytes_and_streams(tmp_path):
    assert atomic_write(tmp_path / "a" / "t.txt", "é\n").read_bytes() == "é\n".encode()
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "c.bin", lambda f: f.write(b"xyz")).read_bytes() == b"xyz"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write(tmp_path / "metrics.csv", "old")

    def dies(f):
        f.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, dies)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
