"""Log capture: size rotation, tail across rotated files, huge lines, a real flooding subprocess."""

from __future__ import annotations

import asyncio
import re
import sys
import tracemalloc
from pathlib import Path

from supervisor.logs import LogWriter, last_bytes, output_tail, pump, tail


def _lines(count: int) -> list[bytes]:
    return [f"line {i:02d}\n".encode() for i in range(count)]  # 8 bytes each


def test_rotation_keeps_size_file_count_and_line_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=100, backups=2)
    for line in _lines(50):
        writer.write(line)
    writer.close()

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["w.log", "w.log.1", "w.log.2"]
    for name in ("w.log.1", "w.log.2"):
        content = (tmp_path / name).read_bytes()
        assert len(content) == 96  # 12 whole lines fit in 100 bytes
        assert content.endswith(b"\n")
    kept = b"".join((tmp_path / n).read_bytes() for n in ("w.log.2", "w.log.1", "w.log"))
    assert kept == b"".join(_lines(50)[24:])


def test_one_write_spanning_several_files_rotates_each_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=100, backups=5)
    writer.write(b"".join(_lines(30)))
    writer.close()
    sizes = [len((tmp_path / n).read_bytes()) for n in ("w.log.2", "w.log.1", "w.log")]
    assert sizes == [96, 96, 48]


def test_reopened_writer_counts_existing_size(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    path.write_bytes(b"x" * 90 + b"\n")
    writer = LogWriter(path, max_bytes=100, backups=1)
    writer.write(b"0123456789\n")
    writer.close()
    assert (tmp_path / "w.log.1").read_bytes() == b"x" * 90 + b"\n"
    assert path.read_bytes() == b"0123456789\n"


def test_tail_continues_into_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=100, backups=2)
    for line in _lines(50):
        writer.write(line)
    writer.close()
    expected = [f"line {i:02d}" for i in range(24, 50)]
    assert tail(path, 5) == expected[-5:]  # 2 from w.log, 3 from w.log.1
    assert tail(path, 20) == expected[-20:]
    assert tail(path, 1000) == expected


def test_line_longer_than_max_bytes_is_written_and_tailed_whole(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=100, backups=5)
    writer.write(b"before\n" + b"a" * 250 + b"\nafter\n")
    writer.close()
    assert tail(path, 3) == ["before", "a" * 250, "after"]
    assert all(len(p.read_bytes()) <= 200 for p in tmp_path.iterdir())


def test_endless_output_without_newline_still_rotates(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=1000, backups=2)
    for _ in range(100):
        writer.write(b"z" * 999)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.log", "w.log.1", "w.log.2"]
    assert all(len(p.read_bytes()) <= 2000 for p in tmp_path.iterdir())


def test_mark_separates_runs_even_after_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=10_000, backups=1)
    writer.write(b"crashed mid-li")
    writer.mark("started pid 123")
    writer.close()
    first, mark = tail(path, 2)
    assert first == "crashed mid-li"
    assert re.fullmatch(
        r"--- \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ supervisor: started pid 123 ---", mark
    )


def test_tail_of_huge_file_reads_only_its_end(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with path.open("wb") as file:
        file.truncate(100 * 1024 * 1024)  # 100 MB with no newline: one enormous first line
        file.seek(0, 2)
        file.write(b"\n" + "é".encode() * 5000 + b"\nlast\r\n")
    tracemalloc.start()
    try:
        result = tail(path, 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == ["é" * 5000, "last"]
    assert peak < 2 * 1024 * 1024


def test_tail_decodes_invalid_utf8_with_replacement(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    path.write_bytes(b"ok\nbad \xff\n")
    assert tail(path, 5) == ["ok", "bad \ufffd"]


def test_tail_of_missing_empty_or_zero_lines(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    assert tail(path, 10) == []
    path.write_bytes(b"")
    assert tail(path, 10) == []
    path.write_bytes(b"one\n")
    assert tail(path, 0) == []
    assert tail(path, 10) == ["one"]


async def test_pump_copies_a_flooding_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, max_bytes=1024 * 1024, backups=1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; print('x'*200000); print('err', file=sys.stderr, flush=True); print('end')",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    await asyncio.wait_for(pump(proc.stdout, writer), timeout=10)
    assert await proc.wait() == 0
    writer.close()
    lines = tail(path, 10)
    assert "x" * 200000 in lines
    assert lines[-1] == "end"
    assert "err" in lines
    assert path.stat().st_size == 200001 + 4 + 4


def test_output_tail_leaves_out_the_supervisors_marks(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "w.log", 10_000, 1)
    writer.mark("starting python flow.py")
    writer.write(b"working\nTraceback (most recent call last):\nValueError: boom\n")
    writer.mark("exited: code 1")
    assert output_tail(tmp_path / "w.log", 2) == [
        "Traceback (most recent call last):",
        "ValueError: boom",
    ]
    assert output_tail(tmp_path / "w.log", 10) == [
        "working",
        "Traceback (most recent call last):",
        "ValueError: boom",
    ]


def test_last_bytes_starts_at_a_line_and_spans_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    writer = LogWriter(path, 100, 3)
    for number in range(30):
        writer.write(f"line {number:02d}\n".encode())
    data = last_bytes(path, 50)
    assert len(data) <= 50
    assert data.endswith(b"line 29\n")
    assert data.startswith(b"line ")
    assert last_bytes(path, 10_000).startswith(b"line ")  # everything kept, whole lines
    assert last_bytes(tmp_path / "none.log", 10) == b""


def test_output_tail_shows_only_the_latest_run(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "w.log", 10_000, 1)
    writer.mark("starting flow")
    writer.write(b"first run\n")
    writer.mark("exited: code 1")
    writer.mark("starting flow")
    writer.write(b"second run\n")
    writer.mark("exited: code 1")
    assert output_tail(tmp_path / "w.log", 10) == ["second run"]
