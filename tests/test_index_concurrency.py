"""Galleries under concurrent use (issue 31): one writer at a time, searches never blocked.

Synthetic galleries need no model: image ``n`` is named ``/syn/<n>.png`` and its code is
row ``n`` of a fixed random table (:class:`SyntheticEncoder`). The load tests run 8
search processes in a loop while a writer process adds in chunks, is SIGKILLed once and
resumed, on a synthetic gallery of a million codes and on a few hundred real photos;
every process is started with 'spawn' and every wait is bounded.
``benchmarks/bench_gallery_concurrency.py`` times the same workers.
"""

from __future__ import annotations

import csv
import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fusnet.index.gallery as gallery_module
import fusnet.index.jobs as jobs_module
from fusnet import index
from fusnet.cli import main as cli_main
from fusnet.errors import DataError
from fusnet.index.gallery import Gallery
from fusnet.index.layout import read_meta
from fusnet.serve.export import Encoder, export_model, load
from tests.export_helpers import tiny_run

BITS = 48
TABLE_ROWS = 1 << 21
K = 10
PAUSE = 0.02  # seconds between a searcher's queries: 8 searchers leave the writer a core of two
SPAWN = multiprocessing.get_context("spawn")


@functools.cache
def table() -> np.ndarray:
    """(TABLE_ROWS, 6) uint8: the packed code of synthetic image n is row n."""
    return np.random.default_rng(31).integers(0, 256, (TABLE_ROWS, BITS // 8), dtype=np.uint8)


def _number(path: str | Path) -> int:
    return int(os.fspath(path)[5:-4])  # "/syn/0000123.png" -> 123


class SyntheticEncoder(Encoder):
    """An encoder without a model: the codes of :func:`table`."""

    def __init__(self) -> None:  # no network to build
        self.bits, self.model_id, self.path = BITS, "synthetic", Path("synthetic.fusnet")

    def encode(self, images, batch_size: int = 32) -> np.ndarray:
        return table()[[_number(p) for p in images]]


def synthetic_items(source: str | Path) -> list[tuple[str, str]]:
    """``collect_images`` for ``"syn:START:STOP"``: images START..STOP-1, unlabelled."""
    _, start, stop = str(source).split(":")
    return [(f"/syn/{n:07d}.png", "") for n in range(int(start), int(stop))]


def use_synthetic_images(monkeypatch=None) -> None:
    """Let build/add read ``syn:`` sources: no image files, the path stands in for the image."""
    for module, name, value in ((gallery_module, "collect_images", synthetic_items),
                                (jobs_module, "open_image", lambda path: path)):
        if monkeypatch is None:  # a worker process of its own
            setattr(module, name, value)
        else:
            monkeypatch.setattr(module, name, value)


def build_synthetic(directory: Path, count: int, monkeypatch) -> Gallery:
    """A synthetic gallery of images 0..count-1, built in this process (quickly: no image paths)."""
    def encode_chunk(part, encoder, batch_size, path):
        np.savez(path, codes=table()[[_number(p) for p, _ in part]], kept=np.arange(len(part)),
                 reasons=np.array([], str))

    use_synthetic_images(monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(jobs_module, "_encode_chunk", encode_chunk)
        return index.build(SyntheticEncoder(), f"syn:0:{count}", directory, chunk_size=count)


# --- the worker processes ------------------------------------------------------------------


def check_hits(gallery: Gallery, query: np.ndarray, hits: list, paths: list[str] | None) -> None:
    """K hits sorted by (distance, id), ids in the snapshot, each the right image at its distance."""
    assert len(hits) == K, f"{len(hits)} hits"
    keys = [(h.distance, h.id) for h in hits]
    assert keys == sorted(keys), keys
    for h in hits:
        assert 0 <= h.id < gallery.count, (h.id, gallery.count)
        assert h.path == (paths[h.id] if paths else f"/syn/{h.id:07d}.png"), (h.id, h.path)
        assert h.distance == int(np.unpackbits(query ^ gallery.codes[h.id]).sum()), (h.id, h.distance)


def search_worker(directory: str, out: str, stop: str, deadline: float, seed: int,
                  model: str | None = None, paths_file: str | None = None) -> None:
    """Query the gallery in a loop until ``stop`` exists (or the deadline); a record to ``out``.

    Each query moves to the last published snapshot (``Gallery.refresh``) and checks its
    hits against it. Synthetic galleries get random codes; with ``model``, the codes of 20
    of the photos listed in ``paths_file`` (the gallery's images in id order).
    """
    rng = np.random.default_rng(seed)
    paths = json.loads(Path(paths_file).read_text()) if paths_file else None
    photos = load(model).encode(paths[:: len(paths) // 20]) if model else None  # (20, nbytes)
    record: dict = {"queries": 0, "failures": [], "latencies": [], "counts": []}
    gallery = None
    while not os.path.exists(stop) and time.time() < deadline:
        if photos is None:
            query = rng.integers(0, 256, (1, BITS // 8), dtype=np.uint8)
        else:
            query = photos[rng.integers(len(photos))][None]  # (1, nbytes)
        started = time.perf_counter()
        try:
            gallery = Gallery.open(directory) if gallery is None else gallery.refresh()
            hits = gallery.search_codes(query, K)[0]
            record["latencies"].append(time.perf_counter() - started)
            check_hits(gallery, query[0], hits, paths)
        except Exception as exc:  # every failure is recorded and fails the test
            record["failures"].append(f"{type(exc).__name__}: {exc}")
        record["queries"] += 1
        if gallery is not None and (not record["counts"] or record["counts"][-1] != gallery.count):
            record["counts"].append(gallery.count)
            _write_json(Path(out), record)  # progress: the parent waits on counts
        time.sleep(PAUSE)
    _write_json(Path(out), record)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def writer_worker(directory: str, source: str, chunk_size: int, delay: float, model: str | None = None) -> None:
    """``fusnet.index.add`` in a process of its own, ``delay`` seconds more per chunk."""
    if model is None:
        use_synthetic_images()
    encode = jobs_module._encode_chunk
    jobs_module._encode_chunk = lambda *args: (time.sleep(delay), encode(*args))[1]
    index.add(directory, source, model=model or SyntheticEncoder(), chunk_size=chunk_size)


def wait_for(condition, seconds: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail after ``seconds``."""
    end = time.time() + seconds
    while not condition():
        if time.time() > end:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def start_searchers(directory: Path, folder: Path, n: int, seconds: float, **options) -> list:
    """``n`` search processes and their result files; returns once each has answered."""
    deadline = time.time() + seconds
    procs = []
    for i in range(n):
        out = folder / f"searcher-{i}.json"
        proc = SPAWN.Process(target=search_worker, kwargs=dict(
            directory=str(directory), out=str(out), stop=str(folder / "stop"), deadline=deadline,
            seed=i, **options), daemon=True)
        proc.start()
        procs.append((proc, out))

    def answered() -> bool:
        assert all(proc.exitcode is None for proc, _ in procs), "a searcher died"
        return all(out.is_file() for _, out in procs)

    wait_for(answered, 180, "the searchers' first answers")
    return procs


def stop_searchers(procs: list, folder: Path) -> list[dict]:
    """Stop the search processes; their records."""
    (folder / "stop").touch()
    for proc, _ in procs:
        proc.join(60)
        assert proc.exitcode == 0, f"searcher exit code {proc.exitcode}"
    return [json.loads(out.read_text()) for _, out in procs]


def add_killed_and_resumed(g: Path, folder: Path, source: str, added: int, chunk: int,
                           model: str | None = None, **options) -> Gallery:
    """8 searchers query ``g`` while an add of ``added`` images is SIGKILLed after two chunks,
    then resumed; checks every answer and the final gallery's count, returns it."""
    initial = read_meta(g)["count"]
    procs = start_searchers(g, folder, 8, seconds=300, model=model, **options)
    writer = SPAWN.Process(target=writer_worker, args=(str(g), source, chunk, 0.5, model))
    writer.start()
    wait_for(lambda: read_meta(g)["count"] >= initial + 2 * chunk, 120, "two chunks committed")
    with pytest.raises(DataError, match=rf"being written by PID {writer.pid} "):  # one writer at a time
        index.add(g, source, model=model or SyntheticEncoder())
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(30)
    assert initial < read_meta(g)["count"] < initial + added and (g / "job.json").is_file()
    resumed = SPAWN.Process(target=writer_worker, args=(str(g), source, chunk, 0.0, model))
    resumed.start()
    resumed.join(180)
    assert resumed.exitcode == 0
    final = initial + added
    wait_for(lambda: all(json.loads(out.read_text())["counts"][-1] == final for _, out in procs), 120,
             "every searcher to answer from the final snapshot")
    records = stop_searchers(procs, folder)
    assert [f for r in records for f in r["failures"]] == []
    assert all(r["counts"] == sorted(r["counts"]) and r["counts"][0] >= initial for r in records)
    assert all(r["queries"] >= 3 for r in records)
    done = Gallery.open(g)
    assert done.count == final and not (g / "job.json").exists()
    return done


# --- the tests -----------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_frees_the_lock(
        tmp_path, monkeypatch, capsys):
    g = tmp_path / "g"
    build_synthetic(g, 100, monkeypatch)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from fusnet.index.lock import writer_lock\nwith writer_lock(Path(sys.argv[1])):\n"
         "    print('locked', flush=True)\n    time.sleep(120)\n", str(g)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(DataError, match=rf"is being written by PID {holder.pid} \(`-c .*`, since "):
            index.add(g, "syn:100:200", model=SyntheticEncoder())
        assert cli_main(["index", "add", str(g), "syn:100:200"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"PID {holder.pid}" in err and "run this command again" in err
        assert Gallery.open(g).count == 100  # searches are not blocked
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert (g / ".writer.json").is_file()  # left by the killed holder: stale, and the lock is free
    assert index.add(g, "syn:100:200", model=SyntheticEncoder()).count == 200
    assert not (g / ".writer.json").exists()


def test_a_dropped_job_keeps_its_committed_chunks_and_the_next_add_starts_afresh(tmp_path, monkeypatch):
    g = tmp_path / "g"
    build_synthetic(g, 100, monkeypatch)
    encode, calls = jobs_module._encode_chunk, []

    def stop_at_third(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[3])
        encode(*args)

    with monkeypatch.context() as patch:
        patch.setattr(jobs_module, "_encode_chunk", stop_at_third)
        with pytest.raises(KeyboardInterrupt):
            index.add(g, "syn:100:200", model=SyntheticEncoder(), chunk_size=20)
    with pytest.raises(DataError, match=r"interrupted job over 100 images, not these 40: .* committed stay"):
        index.add(g, "syn:300:340", model=SyntheticEncoder(), chunk_size=20)
    (g / "job.json").unlink()  # dropped, as that message says, but a chunk file left behind:
    np.savez(g / "chunks" / "0001-000000.npz", codes=table()[:20], kept=np.arange(20), reasons=np.array([], str))
    done = index.add(g, "syn:300:340", model=SyntheticEncoder(), chunk_size=20)
    assert [_number(p) for p, _ in done.items] == [*range(140), *range(300, 340)]
    np.testing.assert_array_equal(done.codes, table()[[_number(p) for p, _ in done.items]])


@pytest.mark.slow
def test_a_million_codes_searched_by_8_processes_during_a_killed_and_resumed_add(tmp_path, monkeypatch):
    initial, added = 1_000_000, 40_000
    g = tmp_path / "g"
    build_synthetic(g, initial, monkeypatch)
    done = add_killed_and_resumed(g, tmp_path, f"syn:{initial}:{initial + added}", added, chunk=8_000)
    assert [_number(p) for p, _ in done.items] == list(range(initial + added))  # none lost, none twice
    np.testing.assert_array_equal(done.codes, table()[: initial + added])


@pytest.mark.slow
def test_real_photos_searched_by_8_processes_during_a_killed_and_resumed_add(tmp_path, flowers17_root):
    photos = sorted(str(p.resolve()) for p in (flowers17_root / "jpg").glob("*.jpg"))[:400]
    assert len(photos) == 400
    model = str(export_model(tiny_run(tmp_path / "run"), tmp_path / "model.fusnet"))
    for name, rows in (("initial.csv", photos[:300]), ("added.csv", photos[300:])):
        with (tmp_path / name).open("w", newline="") as handle:
            csv.writer(handle).writerows([["path"], *([p] for p in rows)])
    g = tmp_path / "g"
    before = index.build(model, tmp_path / "initial.csv", g, chunk_size=100)
    (tmp_path / "paths.json").write_text(json.dumps(photos))
    done = add_killed_and_resumed(g, tmp_path, str(tmp_path / "added.csv"), 100, chunk=10, model=model,
                                  paths_file=str(tmp_path / "paths.json"))
    assert [p for p, _ in done.items] == photos  # none lost, none twice
    np.testing.assert_array_equal(done.codes[:300], before.codes)
    assert np.unpackbits(done.codes[300:] ^ load(model).encode(photos[300:]), axis=1).mean() < 0.01
