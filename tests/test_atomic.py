"""The one atomic write: no half-written file, no clobbering, no litter left by killed writers."""

import os
import signal
import subprocess
import sys
import time

import pytest

from swinjax import atomic
from swinjax.atomic import STALE_AFTER_S, write_atomic


def test_bytes_and_writer_functions_land_whole(tmp_path):
    write_atomic(tmp_path / "a.bin", b"abc")
    write_atomic(tmp_path / "b.bin", lambda f: f.write(b"xyz" * 1000))
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert (tmp_path / "b.bin").read_bytes() == b"xyz" * 1000
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]


def test_no_overwrite_keeps_the_existing_file(tmp_path):
    write_atomic(tmp_path / "a.bin", b"old")
    with pytest.raises(FileExistsError, match="already exists"):
        write_atomic(tmp_path / "a.bin", b"new", overwrite=False)
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    write_atomic(tmp_path / "a.bin", b"new")
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_a_failing_writer_leaves_neither_output_nor_temporary_file(tmp_path):
    def broken(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "a.bin", broken)
    assert os.listdir(tmp_path) == []


def _killed_writer_litter(folder, name):
    """Runs a writer in a child process and kills it (SIGKILL) in the middle of the write."""
    code = (
        "import sys, time; from swinjax.atomic import write_atomic\n"
        "def slow(f):\n"
        "    f.write(b'x'); f.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"write_atomic({str(folder / name)!r}, slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    left = [p for p in folder.iterdir() if p.name != name]
    assert len(left) == 1 and atomic.temp_pattern(folder / name).fullmatch(left[0].name), left
    return left[0]


def test_the_next_write_removes_the_stale_temporary_file_of_a_killed_writer(tmp_path):
    litter = _killed_writer_litter(tmp_path, "out.swj")
    assert not (tmp_path / "out.swj").exists()
    # Recent litter may belong to a live writer: kept.
    write_atomic(tmp_path / "out.swj", b"1")
    assert litter.exists()
    # Once it is older than STALE_AFTER_S, the next write to the same name removes it ...
    old = time.time() - STALE_AFTER_S - 5
    os.utime(litter, (old, old))
    other = tmp_path / ".other.swj.abcdefgh.tmp"  # ... and only the litter of that name
    other.write_bytes(b"")
    os.utime(other, (old, old))
    write_atomic(tmp_path / "out.swj", b"2")
    assert not litter.exists() and other.exists()
    assert (tmp_path / "out.swj").read_bytes() == b"2"
