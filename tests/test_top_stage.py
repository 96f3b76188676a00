"""Top-stage fine-tuning (mode="top"): cached views, what trains, resume (the backbone
stages themselves: tests/test_backbones.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fusnet import runtime
from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.models.multifusnet import MultiFusNet
from fusnet.train.loop import Trainer, load_checkpoint, train
from fusnet.train.top_stage import epoch_view_rows, freeze_depthwise, is_depthwise
from tests.conftest import interrupt_in_epoch
from tests.test_train import tiny_config


def test_epoch_view_rows_draw_one_view_per_image_from_seed_and_epoch():
    rows = torch.tensor([4, 0, 7, 2])
    a = epoch_view_rows(rows, num_images=10, views=3, seed=1, epoch=2)
    assert torch.equal(a, epoch_view_rows(rows, 10, 3, seed=1, epoch=2))
    assert torch.equal(a % 10, rows) and bool(((a // 10) < 3).all())
    draws = torch.stack([epoch_view_rows(torch.arange(10), 10, 3, 1, e) // 10 for e in range(6)])
    assert len(draws.unique()) == 3  # every view is used


def test_config_checks_the_top_mode_options():
    with pytest.raises(ConfigError, match="top_stages"):
        RunConfig(mode="top", top_stages=3)
    with pytest.raises(ConfigError, match="cached_views"):
        RunConfig().replace(mode="frozen", **{"data.cached_views": 2})
    with pytest.raises(ConfigError, match="augment"):
        RunConfig().replace(**{"data.augment": "strong"})
    with pytest.raises(ConfigError, match="schedule"):
        RunConfig().replace(**{"optim.schedule": "linear"})


def test_cosine_schedule_warms_up_then_decays_to_the_end(tmp_path):
    config = tiny_config(tmp_path, **{"optim.schedule": "cosine", "optim.warmup_epochs": 2,
                                           "optim.epochs": 6})
    from fusnet.train.optim import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, config)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert rates == pytest.approx(expected)


@pytest.mark.slow
@pytest.mark.parametrize("top_stages", [1, 2])
def test_top_mode_trains_only_the_top_stages_and_the_head(tmp_path, top_stages):
    config = tiny_config(tmp_path, mode="top", top_stages=top_stages, select="last",
                         **{"data.cached_views": 2, "data.augment": "mild"})
    result = train(config)
    assert "top-stage fine-tuning" in result.metrics["mode_note"]
    trained = load_checkpoint(tmp_path / "run" / "model.pt")["model"]
    runtime.seed_everything(config.seed)  # as the trainer does before building the model
    initial = MultiFusNet(config.model, num_classes=1).backbone.state_dict()
    frozen = ("conv1", "bn1", "layer1", "layer2") + (("layer3",) if top_stages == 1 else ())
    for key, value in initial.items():
        if not key.endswith("num_batches_tracked"):
            unchanged = torch.equal(trained[f"backbone.{key}"], value)
            assert unchanged == key.startswith(frozen), key


@pytest.mark.slow
def test_freeze_depthwise_keeps_only_the_depthwise_weights_of_the_top_stages(tmp_path):
    config = tiny_config(tmp_path, mode="top", top_stages=1, select="last",
                         freeze_depthwise=True,
                         **{"data.cached_views": 1, "model.backbone": "efficientnet_lite0",
                            "optim.epochs": 1})
    result = train(config)
    assert "depthwise convolutions kept at the pretrained weights" in result.metrics["mode_note"]
    trained = load_checkpoint(tmp_path / "run" / "model.pt")["model"]
    runtime.seed_everything(config.seed)  # as the trainer does before building the model
    initial = MultiFusNet(config.model, num_classes=1).backbone
    names = {module: name for name, module in initial.named_modules()}
    checked = {True: 0, False: 0}
    for module in initial.stages()[-1].modules():  # Lite0's stride-32 stage
        for param_name, value in module.named_parameters(recurse=False):
            unchanged = torch.equal(trained[f"backbone.{names[module]}.{param_name}"], value)
            assert unchanged == is_depthwise(module), (names[module], param_name)
            checked[unchanged] += 1
    assert checked[True] == 5 and checked[False] > 5  # 5 depthwise convs; the rest trained


def test_freeze_depthwise_is_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(ConfigError, match=r"freeze_depthwise.*--mode top"):
        RunConfig().replace(mode="frozen", freeze_depthwise=True)
    with pytest.raises(ConfigError, match=r"resnet18.*no depthwise"):
        train(tiny_config(tmp_path, mode="top", freeze_depthwise=True))
    assert not (tmp_path / "run").exists()  # refused before any cache or run folder
    with pytest.raises(ConfigError, match="no depthwise"):
        freeze_depthwise(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3)))


@pytest.mark.slow
def test_top_mode_resume_continues_exactly(tmp_path, monkeypatch):
    changes = {"mode": "top", "select": "last", "data.cached_views": 2,
               "optim.schedule": "cosine", "optim.warmup_epochs": 1}
    straight = train(tiny_config(tmp_path / "a", **changes))
    interrupted = tiny_config(tmp_path / "b", **changes)
    interrupt_in_epoch(interrupted, monkeypatch, epoch=1)
    resumed = train(interrupted, resume=True)
    assert resumed.metrics["map_index_ties"] == straight.metrics["map_index_ties"]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


@pytest.mark.slow
def test_a_baseline_method_trains_in_top_mode(tmp_path):
    config = tiny_config(tmp_path, mode="top", method="hashnet", select="last")
    trainer = Trainer(config)
    result = trainer.run()
    stage_params = {id(p) for p in trainer.trainable.stages.parameters()}
    groups = trainer.optimizer.param_groups
    assert any(stage_params == {id(p) for p in g["params"]} for g in groups)
    assert 0.0 <= result.metrics["map_index_ties"] <= 1.0


@pytest.mark.slow
def test_cached_views_do_not_depend_on_workers_or_the_encoding_batch(tmp_path):
    from fusnet.train.loop import cache_features

    changes = {"mode": "top", "data.cached_views": 2, "cache_dir": str(tmp_path / "cache")}
    cache_features(tiny_config(tmp_path / "a", **changes))
    files = sorted((tmp_path / "cache").iterdir())
    views = [f for f in files if "-view" in f.name]
    assert len(views) == 2
    first = [torch.load(f, weights_only=True)["levels"][0] for f in views]
    cache_features(tiny_config(tmp_path / "b", **changes, **{"data.num_workers": 2,
                                                              "data.eval_batch_size": 8}))
    assert sorted((tmp_path / "cache").iterdir()) == files  # the same keys: read, not made
    for f in views:  # and made again under the other settings, the same maps
        f.unlink()
    cache_features(tiny_config(tmp_path / "c", **changes, **{"data.num_workers": 2,
                                                              "data.eval_batch_size": 8}))
    again = [torch.load(f, weights_only=True)["levels"][0] for f in views]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.slow
def test_a_feature_cache_depends_on_its_key_alone_not_on_the_run_that_made_it(tmp_path):
    from fusnet.train.loop import cache_features

    cache = {"mode": "frozen", "cache_dir": str(tmp_path / "cache"), "select": "last",
             # pretrained maps have several saliency peaks, where the zoom's random mode matters
             "model.backbone": "efficientnet_lite0", "model.pretrained": "default"}
    # The baseline and the full model consume the random stream differently before caching.
    cache_features(tiny_config(tmp_path / "a", **cache, **{"model.cascade": False}))
    files = sorted((tmp_path / "cache").iterdir())
    first = [torch.load(f, weights_only=True)["zoom_levels"][-1] for f in files]
    for f in files:
        f.unlink()
    made = train(tiny_config(tmp_path / "b", **cache))  # computes the caches again
    again = [torch.load(f, weights_only=True)["zoom_levels"][-1] for f in files]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # and a run that finds the caches trains exactly as the one that made them
    found = train(tiny_config(tmp_path / "c", **cache))
    assert found.metrics["map_index_ties"] == made.metrics["map_index_ties"]
    assert [h["loss"] for h in found.history] == [h["loss"] for h in made.history]
    # each manifest says which caches its run made (and their seconds) and which it read
    manifests = [json.loads((r.output_dir / "manifest.json").read_text()) for r in (made, found)]
    assert [sorted(c["file"] for c in m["feature_caches"]) for m in manifests] == [
        sorted(f.name for f in files)] * 2
    assert [[c["computed"] for c in m["feature_caches"]] for m in manifests] == [
        [True] * len(files), [False] * len(files)]
    assert manifests[0]["caching_seconds_this_process"] > 0
    assert manifests[1]["caching_seconds_this_process"] == 0
    assert [m["caching_seconds"] for m in manifests] == [
        manifests[0]["caching_seconds_this_process"], 0]
    # a run that read a cache still shows what making it cost (recorded in the cache file)
    made_cost = {c["file"]: c["made"] for c in manifests[0]["feature_caches"]}
    assert all(cost["seconds"] > 0 and cost["threads"] >= 1 for cost in made_cost.values())
    assert {c["file"]: c["made"] for c in manifests[1]["feature_caches"]} == made_cost
    for m in manifests:  # and what it spent evaluating, on how many threads
        assert m["eval_seconds"] == pytest.approx(m["validation_seconds"] + m["test_seconds"],
                                                  abs=0.02)
        assert m["test_seconds"] > 0 and m["threads"] == torch.get_num_threads()
        assert m["wall_seconds"] >= m["train_seconds"] + m["eval_seconds"]


def record_cache_forwards(monkeypatch, keyword: str) -> list:
    """Record the ``keyword`` argument (e.g. the layout or the arithmetic) of every caching
    forward (``batches.compute_levels``) from now on; the forwards themselves still run."""
    from fusnet.train import batches

    compute_levels = batches.compute_levels
    recorded = []

    def recording(*args, **kwargs):
        recorded.append(kwargs[keyword])
        return compute_levels(*args, **kwargs)

    monkeypatch.setattr(batches, "compute_levels", recording)
    return recorded


CHANNELS_LAST_TOLERANCE = 2e-3
"""Channels-last caches' maps within this of the default layout's (absolute and relative):
the same float32 arithmetic in another summation order (about 1e-4), then float16 storage,
whose rounding step is about 1e-3 of a value."""


def test_channels_last_caches_match_the_default_layout_under_their_own_key(tmp_path,
                                                                          monkeypatch):
    layouts_used = record_cache_forwards(monkeypatch, "memory_format")
    common = {"mode": "top", "data.cached_views": 1, "model.backbone": "efficientnet_lite0",
              "cache_dir": str(tmp_path / "cache")}
    runs = {}
    for layout in ("contiguous", "channels_last"):
        trainer = Trainer(tiny_config(tmp_path / layout, **common,
                                      **{"data.cache_layout": layout}))
        trainer.setup()
        runs[layout] = trainer
    assert layouts_used == [torch.contiguous_format] * 3 + [torch.channels_last] * 3
    names = {layout: {c["file"] for c in t.data.feature_caches} for layout, t in runs.items()}
    assert len(names["contiguous"]) == len(names["channels_last"]) == 3  # train, test, view
    assert not names["contiguous"] & names["channels_last"]  # the layout is in the key
    default, nhwc = (runs[layout].data for layout in ("contiguous", "channels_last"))
    for cache in ("database_cache", "query_cache", "view_cache"):
        a, b = getattr(default, cache), getattr(nhwc, cache)
        for x, y in zip(a.levels + a.zoom_levels, b.levels + b.zoom_levels, strict=True):
            assert y.is_contiguous() and y.dtype == torch.float16
            torch.testing.assert_close(y.float(), x.float(), atol=CHANNELS_LAST_TOLERANCE,
                                       rtol=CHANNELS_LAST_TOLERANCE)
    backbone = runs["channels_last"].model.backbone  # given back in the default layout
    assert all(p.is_contiguous() for p in backbone.parameters())
    with pytest.raises(ConfigError, match="cache_layout"):
        RunConfig().replace(**{"data.cache_layout": "nhwc"})


BF16_CACHE_TOLERANCE = 0.05
"""bf16 caches' maps within this share of float32's: a map's largest difference against its
largest value; a zoomed view's mean difference against its mean value, because its crop
moves by a pixel where the saliency (computed from bf16 maps) sits near the zoom's threshold.
bf16 keeps 8 bits of mantissa; measured on the tiny backbone here: 2-4% and 1-2.5%."""


def test_bf16_caches_track_float32_under_their_own_key_and_the_manifest_says_so(
        tmp_path, monkeypatch, caplog):
    precisions_used = record_cache_forwards(monkeypatch, "precision")
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)  # bf16 runs either way
    common = {"mode": "top", "data.cached_views": 1, "model.backbone": "efficientnet_lite0",
              "cache_dir": str(tmp_path / "cache"), "optim.epochs": 1, "select": "last"}
    runs = {p: train(tiny_config(tmp_path / p, **common, **{"data.cache_precision": p}))
            for p in ("float32", "bfloat16")}
    assert precisions_used == ["float32"] * 3 + ["bfloat16"] * 3
    manifests = {p: json.loads((r.output_dir / "manifest.json").read_text())
                 for p, r in runs.items()}
    names = {p: {c["file"] for c in m["feature_caches"]} for p, m in manifests.items()}
    assert len(names["float32"]) == len(names["bfloat16"]) == 3  # train, test, view
    assert not names["float32"] & names["bfloat16"]  # the arithmetic is in the key
    assert manifests["bfloat16"]["cache_precision"] == {"requested": "bfloat16",
                                                        "used": "bfloat16"}
    for name in names["float32"]:
        x, y = (torch.load(tmp_path / "cache" / n, weights_only=True) for n in (
            name, next(n for n in names["bfloat16"] if n.split("-")[-2] == name.split("-")[-2])))
        for kind, reduce in (("levels", torch.amax), ("zoom_levels", torch.mean)):
            for a, b in zip(x[kind], y[kind], strict=True):  # (N, C, H, W) float16
                assert b.dtype == torch.float16 and not torch.equal(a, b)  # computed in bf16
                difference = reduce((b.float() - a.float()).abs())
                assert difference <= BF16_CACHE_TOLERANCE * reduce(a.float().abs()), kind
    # without native bf16 the caches are float32's, found under float32's key, and said so
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    with caplog.at_level("WARNING", logger="fusnet.runtime"):
        fallback = train(tiny_config(tmp_path / "fallback", **common,
                                     **{"data.cache_precision": "bfloat16"}))
    manifest = json.loads((fallback.output_dir / "manifest.json").read_text())
    assert manifest["cache_precision"]["used"] == "float32"
    assert "data.cache_precision ran in float32" in manifest["cache_precision"]["note"]
    assert "data.cache_precision = 'bfloat16'" in caplog.text
    assert {c["file"] for c in manifest["feature_caches"]} == names["float32"]
    assert not any(c["computed"] for c in manifest["feature_caches"])
    with pytest.raises(ConfigError, match="cache_precision"):
        RunConfig().replace(**{"data.cache_precision": "float16"})


@pytest.mark.slow
def test_eval_image_size_encodes_larger_images_than_the_views_train_on(tmp_path):
    from fusnet.serve.export import export_model, read_export

    common = {"mode": "top", "select": "last", "optim.epochs": 1, "data.cached_views": 1,
              "data.augment": "mild", "cache_dir": str(tmp_path / "cache")}
    trainers = {size: Trainer(tiny_config(tmp_path / str(size), **common,
                                          **{"data.eval_image_size": size}))
                for size in (0, 96)}  # 0: the training size, 64 px
    trainers[0].setup()
    trainers[96].run()
    width = {size: {name: getattr(t.data, name).levels[0].shape[-1]  # (N, C, H, W)
                    for name in ("database_cache", "query_cache", "view_cache")}
             for size, t in trainers.items()}
    assert width[0] == {"database_cache": 8, "query_cache": 8, "view_cache": 8}  # stride 8
    assert width[96] == {"database_cache": 12, "query_cache": 12, "view_cache": 8}
    files = {size: [c["file"] for c in t.data.feature_caches] for size, t in trainers.items()}
    assert files[0][-1] == files[96][-1] and "view0" in files[0][-1]  # the views are shared
    assert not set(files[0][:2]) & set(files[96][:2])  # train and test at their own size
    exported = export_model(tmp_path / "96" / "run", tmp_path / "model.fusnet")
    assert read_export(exported)["transform"]["image_size"] == 96  # what it encodes
    with pytest.raises(ConfigError, match="eval_image_size"):  # trains on the eval caches
        RunConfig().replace(**{"mode": "frozen", "data.eval_image_size": 96})
    with pytest.raises(ConfigError, match="eval_image_size"):
        RunConfig().replace(**{"data.eval_image_size": 16})


@pytest.mark.slow
def test_the_validation_split_does_not_rename_the_feature_caches(tmp_path):
    from fusnet.train.loop import cache_features

    cache = {"mode": "frozen", "cache_dir": str(tmp_path / "cache")}
    cache_features(tiny_config(tmp_path / "a", **cache))
    files = sorted((tmp_path / "cache").iterdir())
    cache_features(tiny_config(tmp_path / "b", select="last", **cache))
    cache_features(tiny_config(tmp_path / "c", **cache, **{"data.val_fraction": 0.3}))
    assert sorted((tmp_path / "cache").iterdir()) == files


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "top"])
def test_the_tensor_image_backend_trains_on_image_files(tmp_path, mode):
    from PIL import Image

    root = tmp_path / "photos"
    rng = torch.Generator().manual_seed(0)
    for split, count in (("train", 6), ("test", 2)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (48, 48, 3), generator=rng, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.jpg")
    changes = {"mode": mode, "select": "last", "data.dataset": "imagefolder",
               "data.root": str(root), "data.image_backend": "tensor", "data.batch_size": 4,
               "data.augment": "mild", **({"data.cached_views": 1} if mode == "top" else {})}
    result = train(tiny_config(tmp_path, **changes))
    assert 0.0 <= result.metrics["map_index_ties"] <= 1.0
    with pytest.raises(ConfigError, match="image files"):
        tiny_config(tmp_path, **{"data.image_backend": "tensor"})  # the synthetic set


BF16_LOSS_TOLERANCE = 0.03
"""The bf16 step's loss within 3% of float32's, relative, on one fixed batch (bf16 keeps 8
bits of mantissa: about 2-3 significant digits per operation)."""
BF16_CODE_AGREEMENT = 0.9
"""At least 90% of the batch's code bits equal (a bit flips only where its logit is near 0)."""


def _one_top_batch(tmp_path):
    from fusnet.train.batches import epoch_batches

    trainer = Trainer(tiny_config(tmp_path, mode="top", **{"data.cached_views": 1,
                                                           "model.backbone": "efficientnet_lite0"}))
    trainer.setup()
    batch = next(iter(epoch_batches(trainer.config, trainer.data, trainer.sampler, 0,
                                    trainer.device, zoom=True)))
    return trainer, batch


def test_a_bf16_step_tracks_float32_on_a_fixed_batch(tmp_path):
    trainer, batch = _one_top_batch(tmp_path)
    trainer.trainable.eval()  # no dropout, BatchNorm on running statistics: one function
    results = {}
    for precision in ("float32", "bfloat16"):
        with torch.no_grad():
            loss, _ = trainer.method.batch_loss(
                trainer.trainable, batch,
                lambda p=precision: runtime.autocast_context(trainer.device, False, p))
            with runtime.autocast_context(trainer.device, False, precision):
                logits = trainer.trainable(batch.inputs).hash_logits  # (B, bits)
        results[precision] = (float(loss), torch.sign(logits.float()))
    (loss32, codes32), (loss16, codes16) = results["float32"], results["bfloat16"]
    assert abs(loss16 - loss32) <= BF16_LOSS_TOLERANCE * abs(loss32), (loss16, loss32)
    assert (codes16 == codes32).float().mean() >= BF16_CODE_AGREEMENT


def test_bf16_asked_for_without_native_support_trains_in_float32_and_says_so(tmp_path,
                                                                             monkeypatch,
                                                                             caplog):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)  # a CPU without the flag
    config = tiny_config(tmp_path, mode="frozen", **{"optim.precision": "bfloat16",
                                                     "optim.epochs": 1, "select": "last"})
    with caplog.at_level("WARNING", logger="fusnet.runtime"):
        result = train(config)
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["precision"]["requested"] == "bfloat16"
    assert manifest["precision"]["used"] == "float32" and "float32" in manifest["precision"]["note"]
    assert "without native bfloat16" in caplog.text
    assert runtime.resolved_precision(torch.device("cpu"), "float32") == {
        "requested": "float32", "used": "float32"}
