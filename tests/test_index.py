"""Gallery indexes (``fusnet.index``, ``fusnet index``): build, add, search, resume, bad input."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import fusnet
import fusnet.index.jobs as jobs_module
from fusnet import index
from fusnet.cli import main as cli_main
from fusnet.errors import DataError
from fusnet.eval.retrieval import hamming_topk, pack_codes
from fusnet.index.backends import FlatBackend, IVFBackend, default_nlist
from fusnet.serve.export import export_model
from tests.export_helpers import tiny_run, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("index")
    model_file = export_model(tiny_run(root / "run"), root / "model.fusnet")
    other_file = export_model(tiny_run(root / "run16", bits=16), root / "other.fusnet")
    photos = root / "photos"
    write_images(photos / "red", 7, seed=1)
    write_images(photos / "blue", 6, seed=2)
    write_images(photos, 3, seed=3)  # top level: no label
    more = write_images(root / "more", 5, seed=4)
    return {"root": root, "model": model_file, "other": other_file, "photos": photos,
            "more": root / "more", "more_paths": more, "encoder": fusnet.load(model_file)}


def _ground_truth(gallery, encoder, queries, k):
    """Exact top-k by brute force (numpy), ties by id."""
    return hamming_topk(encoder.encode(queries), gallery.codes, k)


def test_build_add_search_match_brute_force(setup, tmp_path):
    encoder = setup["encoder"]
    g = index.build(setup["model"], setup["photos"], tmp_path / "g", chunk_size=4)
    assert g.count == 16 and g.bits == 12
    items = index.collect_images(setup["photos"])
    assert [p for p, _ in g.items] == [p for p, _ in items]
    assert {label for _, label in g.items} == {"", "red", "blue"}
    np.testing.assert_array_equal(g.codes, encoder.encode([p for p, _ in items]))
    g = index.add(tmp_path / "g", setup["more"])
    assert g.count == 21 and g.items[16][0] == str(setup["more_paths"][0].resolve())
    queries = [setup["more_paths"][0], items[3][0]]
    hits = index.search(tmp_path / "g", queries, k=8)
    distances, ids = _ground_truth(g, encoder, queries, 8)
    for row, d, i in zip(hits, distances, ids, strict=True):
        assert [h.id for h in row] == i.tolist() and [h.distance for h in row] == d.tolist()
        assert [h.rank for h in row] == list(range(1, 9))
    assert any(h.id == 16 and h.distance == 0 for h in hits[0])  # the image finds itself
    # k beyond the gallery: every image once
    assert len(index.search(tmp_path / "g", queries[0], k=100)[0]) == 21


def test_unreadable_images_are_listed_and_skipped(setup, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(setup["more"], folder)
    (folder / "broken.jpg").write_bytes(b"not an image")
    g = index.build(setup["encoder"], folder, tmp_path / "g")
    assert g.count == 5 and g.meta["skipped"] == 1
    rows = list(csv.DictReader((tmp_path / "g" / "skipped.csv").open()))
    assert rows[0]["path"].endswith("broken.jpg") and rows[0]["reason"]


def test_empty_or_unreadable_sources_are_clear_errors(setup, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image"):
        index.build(setup["encoder"], tmp_path / "empty", tmp_path / "g1")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        index.build(setup["encoder"], bad, tmp_path / "g2")
    with pytest.raises(DataError, match="holds no image"):
        index.search(tmp_path / "g2", setup["more_paths"][0])
    with pytest.raises(DataError, match="does not exist"):
        index.build(setup["encoder"], tmp_path / "nowhere", tmp_path / "g3")
    table = tmp_path / "list.csv"
    table.write_text("file,label\na.jpg,1\n")
    with pytest.raises(DataError, match="no 'path' column"):
        index.build(setup["encoder"], table, tmp_path / "g4")
    with pytest.raises(DataError, match="not a gallery"):
        index.search(tmp_path, setup["more_paths"][0])


def test_csv_source_keeps_order_and_labels(setup, tmp_path):
    table = tmp_path / "list.csv"
    paths = list(reversed(setup["more_paths"]))
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows((p, f"c{i}") for i, p in enumerate(paths))
    g = index.build(setup["encoder"], table, tmp_path / "g")
    assert [p for p, _ in g.items] == [str(p.resolve()) for p in paths]
    assert [label for _, label in g.items] == [f"c{i}" for i in range(5)]


def test_interrupted_build_answers_from_its_committed_chunks_then_resumes(setup, tmp_path, monkeypatch):
    straight = index.build(setup["encoder"], setup["photos"], tmp_path / "straight", chunk_size=4)
    original = jobs_module._encode_chunk
    calls: list[Path] = []

    def stop_at_third(part, encoder, batch_size, path):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(path)
        return original(part, encoder, batch_size, path)

    monkeypatch.setattr(jobs_module, "_encode_chunk", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        index.build(setup["encoder"], setup["photos"], tmp_path / "g", chunk_size=4)
    # searches answer from the two chunks committed (issue 31: they used to be refused)
    assert sorted(h.id for h in index.search(tmp_path / "g", setup["more_paths"][0], k=16)[0]) == list(range(8))
    with pytest.raises(DataError, match="interrupted job over 16 images, not these 5"):
        index.build(setup["encoder"], setup["more"], tmp_path / "g", chunk_size=4)
    calls.clear()
    monkeypatch.setattr(jobs_module, "_encode_chunk",
                        lambda *a: (calls.append(a[3]), original(*a))[1])
    g = index.build(setup["encoder"], setup["photos"], tmp_path / "g", chunk_size=4)
    assert len(calls) == 2  # chunks 3 and 4 only: the first two were kept
    np.testing.assert_array_equal(g.codes, straight.codes)
    assert g.items == straight.items and not (tmp_path / "g" / "job.json").exists()


def test_commit_interrupted_after_recording_is_not_applied_twice(setup, tmp_path, monkeypatch):
    index.build(setup["encoder"], setup["more"], tmp_path / "g")
    monkeypatch.setattr(jobs_module, "_clean_job", lambda directory: None)
    assert index.add(tmp_path / "g", setup["photos"]).count == 21  # committed; the job files stay behind
    monkeypatch.undo()
    assert (tmp_path / "g" / "job.json").exists()
    g = index.add(tmp_path / "g", setup["photos"])  # the rerun only cleans up
    assert g.count == 21 and not (tmp_path / "g" / "job.json").exists()


def test_a_gallery_written_before_snapshots_searches_and_its_first_add_records_them(setup, tmp_path):
    g = index.build(setup["encoder"], setup["more"], tmp_path / "g")
    meta_file = tmp_path / "g" / "gallery.json"
    meta = json.loads(meta_file.read_text())
    for key in ("generation", "sizes", "uid"):  # the layout of before issue 31
        del meta[key]
    meta_file.write_text(json.dumps(meta))
    with (tmp_path / "g" / "items.csv").open("a", newline="") as handle:  # a killed commit's row
        csv.writer(handle).writerow([5, "/elsewhere/x.png", ""])
    old = index.Gallery.open(tmp_path / "g")
    assert old.items == g.items and old.refresh() is old
    assert sorted(h.id for h in index.search(tmp_path / "g", setup["more_paths"][0], k=9)[0]) == list(range(5))
    g = index.add(tmp_path / "g", setup["photos"])
    assert g.count == 21 and g.meta["generation"] == 1 and g.meta["sizes"]["items.csv"] > 0
    assert g.items[:5] == old.items and "/elsewhere/x.png" not in {p for p, _ in g.items}
    assert old.refresh().items == g.items


def test_a_file_that_is_not_a_model_is_refused_without_unsafe_advice(setup, tmp_path, capsys):
    fake = tmp_path / "notamodel.jpg"
    fake.write_bytes(pickle.dumps({"weights": object}, protocol=2))  # a pickle torch refuses
    assert cli_main(["index", "build", str(fake), str(setup["more"]), "--output", str(tmp_path / "g")]) == 1
    err = capsys.readouterr().err
    assert "notamodel.jpg is not a fusnet model file" in err and "weights_only" not in err


def test_a_damaged_gallery_is_refused(setup, tmp_path):
    index.build(setup["encoder"], setup["more"], tmp_path / "g")
    codes = np.load(tmp_path / "g" / "codes.npy")
    np.save(tmp_path / "g" / "codes.npy", codes[:3])
    with pytest.raises(DataError, match="inconsistent"):
        index.search(tmp_path / "g", setup["more_paths"][0])


def test_another_model_or_code_length_is_refused(setup, tmp_path):
    index.build(setup["encoder"], setup["more"], tmp_path / "g")
    with pytest.raises(DataError, match="12-bit codes of model"):
        index.search(tmp_path / "g", setup["more_paths"][0], model=setup["other"])
    with pytest.raises(DataError, match="search and add with the gallery's model"):
        index.add(tmp_path / "g", setup["photos"], model=setup["other"])
    with pytest.raises(DataError, match="already holds a gallery of 5 images"):
        index.build(setup["encoder"], setup["photos"], tmp_path / "g")
    assert index.build(setup["encoder"], setup["photos"], tmp_path / "g", overwrite=True).count == 16
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a gallery"):
        index.build(setup["encoder"], setup["photos"], tmp_path / "junk")


def test_cli_build_add_search_json_and_sheet(setup, tmp_path, capsys):
    out = tmp_path / "g"
    assert cli_main(["index", "build", str(setup["model"]), str(setup["photos"]), "--output", str(out)]) == 0
    assert "16 images" in capsys.readouterr().out
    assert cli_main(["index", "add", str(out), str(setup["more"])]) == 0
    assert "21 images" in capsys.readouterr().out
    query = str(setup["more_paths"][1])
    sheet = tmp_path / "hits.png"
    assert cli_main(["index", "search", str(out), query, "--k", "4", "--json", "--sheet", str(sheet)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["query"] == query and rows[0]["hits"][0]["distance"] == 0
    assert [h["rank"] for h in rows[0]["hits"]] == [1, 2, 3, 4]
    assert sheet.is_file() and sheet.stat().st_size > 1000
    assert cli_main(["index", "convert", str(out), "--kind", "ivf", "--nlist", "2", "--nprobe", "2"]) == 0
    assert "21 images" in capsys.readouterr().out and (out / "ivf-21.faiss").is_file()
    assert cli_main(["index", "search", str(out), query, "--k", "4", "--json"]) == 0
    approx = json.loads(capsys.readouterr().out)[0]["hits"]  # every list scanned: the exact distances
    assert [h["distance"] for h in approx] == [h["distance"] for h in rows[0]["hits"]]


# --- backends on synthetic codes ----------------------------------------------------------


def _class_codes(n: int, bits: int, seed: int = 0, classes: int = 20, flip: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.random((classes, bits)) < 0.5  # (C, bits)
    labels = rng.integers(0, classes, n)
    noise = rng.random((n, bits)) < flip  # (n, bits)
    return pack_codes(np.where(centres[labels] ^ noise, 1.0, -1.0))


def test_ivf_scanning_every_list_finds_the_exact_distances():
    db, queries = _class_codes(4000, 48), _class_codes(50, 48, seed=1)
    flat = FlatBackend(48)
    flat.add(db)
    ivf = IVFBackend(48, nlist=16, nprobe=16)
    ivf.add(db[:3000])
    ivf.add(db[3000:])  # a second add goes into the trained lists
    d_exact, i_exact = flat.search(queries, 20)
    d_ivf, i_ivf = ivf.search(queries, 20)
    np.testing.assert_array_equal(d_ivf, d_exact)
    strict = d_exact < d_exact[:, -1:]  # below the k-th distance the hits are unique
    np.testing.assert_array_equal(i_ivf[strict], i_exact[strict])
    assert (np.diff(d_ivf, axis=1) >= 0).all()
    # with few lists scanned it is approximate but far from random
    ivf.nprobe = 2
    d_few, _ = ivf.search(queries, 20)
    assert (d_few >= d_exact).all() and d_few.mean() < d_exact.mean() + 2


def test_ivf_gallery_persists_and_answers_like_flat(setup, tmp_path):
    index.build(setup["encoder"], setup["photos"], tmp_path / "flat")
    ivf = index.build(setup["encoder"], setup["photos"], tmp_path / "ivf", kind="ivf", nlist=2, nprobe=2)
    assert (tmp_path / "ivf" / "ivf-16.faiss").is_file() and ivf.meta["index"]["nlist"] == 2
    index.add(tmp_path / "ivf", setup["more"])
    assert sorted(p.name for p in (tmp_path / "ivf").glob("*.faiss")) == ["ivf-21.faiss"]
    index.add(tmp_path / "flat", setup["more"])
    query = setup["more_paths"][2]
    exact = index.search(tmp_path / "flat", query, k=21)[0]
    approx = index.search(tmp_path / "ivf", query, k=21)[0]  # every list scanned: every image
    assert sorted(h.id for h in approx) == list(range(21))
    assert [h.distance for h in approx] == [h.distance for h in exact]
    with pytest.raises(DataError, match="needs at least 64 codes"):
        index.build(setup["encoder"], setup["more"], tmp_path / "few", kind="ivf", nlist=64)


def test_default_nlist_grows_with_the_gallery():
    assert default_nlist(10) == 1 and default_nlist(39 * 64) == 64
    assert default_nlist(10_000) < default_nlist(1_000_000) == default_nlist(100_000_000) == 1024


def test_ivf_commit_killed_before_recording_resumes(setup, tmp_path, monkeypatch):
    index.build(setup["encoder"], setup["photos"], tmp_path / "g", kind="ivf", nlist=2)

    def killed(directory, meta):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs_module, "write_meta", killed)
    with pytest.raises(KeyboardInterrupt):  # codes, items and ivf-21.faiss written, gallery.json not
        index.add(tmp_path / "g", setup["more"])
    monkeypatch.undo()
    # searches answer from the last snapshot, 16 images (issue 31: they used to be refused)
    assert len(index.search(tmp_path / "g", setup["more_paths"][0], k=21)[0]) == 16
    g = index.add(tmp_path / "g", setup["more"])
    assert g.count == 21 and g.backend.ntotal == 21 and g.meta["index"]["file"] == "ivf-21.faiss"


def test_convert_between_flat_and_ivf_keeps_the_hits(setup, tmp_path):
    flat = index.build(setup["encoder"], setup["photos"], tmp_path / "g")
    query = setup["more_paths"][0]
    exact = index.search(tmp_path / "g", query, k=16)[0]
    moved = index.convert(tmp_path / "g", "ivf", nlist=2, nprobe=2)
    assert moved.meta["index"]["kind"] == "ivf" and moved.count == flat.count
    assert index.search(tmp_path / "g", query, k=16)[0] == exact  # every list scanned, all 16 hits
    back = index.convert(tmp_path / "g", "flat")
    assert back.meta["index"] == {"kind": "flat"} and not list((tmp_path / "g").glob("*.faiss"))
    assert index.search(tmp_path / "g", query, k=16)[0] == exact
