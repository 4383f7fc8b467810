"""Every form of the model on the same images (etdeploy.assurance.forms; docs/method.md §12.1): identical
forms give b = c = 0 and p = 1, a damaged form changes labels, the figures agree with the stats module,
the int8 file and the FormsRun are reproducible, and the report section escapes what it shows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from etdeploy.assurance.forms import FORM_ORDER, FormsRun, compare_forms, evaluate_forms
from etdeploy.assurance.stats import clopper_pearson_interval, mcnemar_exact, wilson_interval
from etdeploy.errors import DataError
from etdeploy.fileio import canonical_json, sha256_file

CLASSES = ("a", "b", "c")


@pytest.fixture(autouse=True)
def _keep_global_rng():
    with torch.random.fork_rng(devices=[]):
        yield


def test_compare_forms_counts_and_tests_on_known_predictions():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    original = labels.copy()
    original[[0, 4]] = [1, 2]  # 8/10 right
    pruned = labels.copy()
    pruned[[1, 2, 3, 5, 6, 7]] = [2, 2, 2, 0, 0, 0]  # wrong on 6 images the original gets right, right on 0 and 4
    run = compare_forms({"pruned": pruned, "original": original, "sliced": pruned.copy()}, labels, CLASSES,
                        split="test", kinds={"original": "torch"})
    assert list(run.forms) == ["original", "pruned", "sliced"]  # FORM_ORDER, whatever order given
    o, p = run.forms["original"], run.forms["pruned"]
    assert (o.correct, o.n, o.accuracy) == (8, 10, 0.8)
    assert (o.ci_low, o.ci_high) == wilson_interval(8, 10)
    assert (o.cp_low, o.cp_high) == clopper_pearson_interval(8, 10)
    assert [(c.class_, c.n, c.correct) for c in o.per_class] == [("a", 4, 3), ("b", 3, 2), ("c", 3, 3)]
    assert p.correct == 4 and p.changed_vs_original == 8 and o.changed_vs_original == 0
    t = run.pair("original", "pruned")
    assert (t.relation, t.b, t.c, t.both_correct, t.both_wrong, t.changed) == ("derived", 6, 2, 2, 0, 8)
    assert t.p_value == mcnemar_exact(6, 2).p_value
    same = run.pair("pruned", "sliced")
    assert (same.b, same.c, same.changed, same.p_value, same.mid_p) == (0, 0, 0, 1.0, 1.0)
    assert run.forms["sliced"].predictions_sha256 == p.predictions_sha256 != o.predictions_sha256
    assert [(x.first, x.second) for x in run.pairs] == [("original", "pruned"), ("pruned", "sliced"),
                                                       ("original", "sliced")]
    back = FormsRun.from_dict(run.to_dict())
    assert back == run


def test_empty_class_has_nan_interval_and_wrong_lengths_are_refused():
    labels = np.array([0, 0, 1])
    run = compare_forms({"original": labels}, labels, CLASSES, split="val")
    empty = run.forms["original"].per_class[2]
    assert empty.n == 0 and math.isnan(empty.accuracy) and math.isnan(empty.ci_low)
    assert "null" in canonical_json(run.to_dict())
    with pytest.raises(DataError, match="2 predictions for 3 images"):
        compare_forms({"original": labels[:2]}, labels, CLASSES, split="val")


@pytest.fixture(scope="module")
def chain(tmp_path_factory, bundled):
    """alexnet-mini trained for 2 epochs (weak on purpose: pruning it moves labels), pruned 90 % (masked and
    sliced), exported, quantised: every form on disk. ``model`` is the original."""
    from etdeploy.api import prune_dirs, rank_dirs, train_model
    from etdeploy.export import SIM_FILE, export_dir, quantize_model

    root = tmp_path_factory.mktemp("forms")
    train_model("alexnet-mini", bundled, epochs=2, seed=0, out=root / "model", progress=False)
    trained_mini_dir = root / "model"
    rank_dirs(trained_mini_dir, bundled, out=root / "rank", steps=4, max_images=40, progress=False)
    prune_dirs(trained_mini_dir, root / "rank", dataset=bundled, schedule="bottom-first", percent=90.0,
               out=root / "prune", progress=False)
    export_dir(root / "prune" / "sliced", root / "export")
    quantize_model(root / "export" / SIM_FILE, root / "prune" / "sliced", dataset=bundled,
                   out=root / "model.int8.onnx", calibration_images=32)
    return root


def _forms(chain, bundled, **kwargs):
    args = {"pruned": chain / "prune" / "masked", "sliced": chain / "prune" / "sliced", "export": chain / "export",
            "int8": chain / "model.int8.onnx"}
    return evaluate_forms(chain / "model", dataset=bundled, split="test", **{**args, **kwargs})


def test_every_form_on_the_test_split(chain, bundled):
    from etdeploy.api import evaluate_model
    from etdeploy.models import load_model

    run = _forms(chain, bundled)
    has_c = "c" not in run.skipped
    assert list(run.forms) == [f for f in FORM_ORDER if f != "c" or has_c]
    assert run.n == 60 and run.split == "test" and run.classes == tuple(bundled.classes)
    # the original's accuracy is the one etdeploy evaluate reports
    expected = evaluate_model(load_model(chain / "model"), bundled, "test", progress=False)["accuracy"]
    assert run.forms["original"].accuracy == pytest.approx(expected, abs=1e-6)
    # slicing and export are exact: same predictions, so McNemar has no discordant pair
    for first, second in (("pruned", "sliced"), ("sliced", "onnx")) + ((("onnx", "c"),) if has_c else ()):
        t = run.pair(first, second)
        assert (t.b, t.c, t.changed, t.p_value) == (0, 0, 0, 1.0), (first, second)
        assert run.forms[first].predictions_sha256 == run.forms[second].predictions_sha256
    # every pair's counts add up, and b - c is the difference in correct images
    for t in run.pairs:
        assert t.both_correct + t.both_wrong + t.b + t.c == t.n
        assert t.b - t.c == run.forms[t.first].correct - run.forms[t.second].correct
        assert t.changed >= t.b + t.c
        assert t.p_value == mcnemar_exact(t.b, t.c).p_value
    assert run.forms["onnx"].files == {"model.sim.onnx": sha256_file(chain / "export" / "model.sim.onnx")}
    assert run.forms["int8"].files == {"model.int8.onnx": sha256_file(chain / "model.int8.onnx")}
    if has_c:
        assert set(run.forms["c"].files) == {"etd_model.c", "etd_model_data.c"} and run.forms["c"].kind == "c"
    # reproducible to the byte
    assert canonical_json(_forms(chain, bundled).to_dict()) == canonical_json(run.to_dict())


def test_damaged_form_changes_labels(chain, bundled, tmp_path):
    from etdeploy.models import load_model, save_model

    damaged = load_model(chain / "model")
    with torch.no_grad():
        last = damaged.classifier[-1]
        last.weight.copy_(last.weight[torch.tensor([1, 2, 3, 4, 0])])  # class k's scores now answer for k - 1
        last.bias.copy_(last.bias[torch.tensor([1, 2, 3, 4, 0])])
    save_model(damaged, tmp_path / "damaged")
    run = evaluate_forms(chain / "model", dataset=bundled, split="test", pruned=tmp_path / "damaged")
    t = run.pair("original", "pruned")
    assert run.forms["pruned"].changed_vs_original == t.changed == 60  # a permuted head moves every label
    assert t.b == run.forms["original"].correct  # every image the original gets right, the damaged form misses
    assert t.p_value == mcnemar_exact(t.b, t.c).p_value
    assert set(run.skipped) == {"sliced", "onnx", "int8", "c"}


def test_int8_is_reproducible_and_missing_files_are_named(chain, bundled, tmp_path):
    from etdeploy.export import SIM_FILE, quantize_model

    again = tmp_path / "again.int8.onnx"
    quantize_model(chain / "export" / SIM_FILE, chain / "prune" / "sliced", dataset=bundled, out=again,
                   calibration_images=32)
    assert sha256_file(again) == sha256_file(chain / "model.int8.onnx")
    with pytest.raises(DataError, match="int8 ONNX file does not exist"):
        evaluate_forms(chain / "prune" / "sliced", dataset=bundled, int8=tmp_path / "nope.onnx")


def test_report_section_escapes_and_reads_the_run():
    from etdeploy.report import Provenance, RunRecord
    from etdeploy.report.sections import evaluate

    labels = np.array([0, 1, 2, 2])
    run = compare_forms({"original": labels, "int8": np.array([0, 1, 2, 1])}, labels, ("<script>x", "b", "c"),
                        split="test", skipped={"c": "gcc <missing>"})
    record = RunRecord(name="r", stages={"evaluate": run.to_dict()}, provenance=Provenance())
    body = str(evaluate.section(record).body)
    assert "<script>" not in body and "&lt;script&gt;x" in body and "gcc &lt;missing&gt;" in body
    assert "original vs int8" in body and "McNemar" in body
    assert "0.750" in str(evaluate.cards(record)[0])
    assert evaluate.section(RunRecord(name="r", stages={}, provenance=Provenance())) is None


def test_quantize_and_evaluate_stages_are_reproducible(chain, tmp_path):
    """The two stage adapters on a run folder laid out as the pipeline lays it out (links to the chain's
    folders): twice into fresh folders, byte-identical artefacts; the summary names the file, not a path."""
    import json

    from etdeploy.export import ExportSet, read_export
    from etdeploy.fileio import atomic_write_json
    from etdeploy.pipeline.config import RunConfig
    from etdeploy.pipeline.context import MANIFEST_FORMAT, RunContext
    from etdeploy.pipeline.stages.evaluate import C_OFF, run_evaluate_stage
    from etdeploy.pipeline.stages.quantize import INT8_FILE, run_quantize_stage

    out = tmp_path / "run"
    (out / "train").mkdir(parents=True)
    (out / "train" / "model").symlink_to(chain / "model")
    (out / "prune").mkdir()
    (out / "prune" / "p95").symlink_to(chain / "prune")  # [prune] export_percent = 95 by default
    (out / "export").mkdir()
    (out / "export" / "sliced").symlink_to(chain / "export")
    exports = ExportSet(exports={"original": read_export(chain / "export"), "sliced": read_export(chain / "export")})
    atomic_write_json(out / "export" / "stage.json", {"format": MANIFEST_FORMAT, "format_version": 1,
                                                      "summary": exports.to_dict()})
    results = []
    for attempt in ("a", "b"):
        ctx = RunContext(RunConfig(), out, progress=False)
        quantize = out / f"quantize-{attempt}"
        quantize.mkdir()
        q = run_quantize_stage(ctx, quantize)
        assert q["int8"] == INT8_FILE and q["split"] == "test" and q["calibration_images"] == 128
        if (out / "quantize").is_symlink():
            (out / "quantize").unlink()
        (out / "quantize").symlink_to(quantize)
        evaluate = out / f"evaluate-{attempt}"
        evaluate.mkdir()
        s = run_evaluate_stage(ctx, evaluate)
        assert s["forms"]["int8"]["files"] == {INT8_FILE: sha256_file(quantize / INT8_FILE)}
        assert s["skipped"] == {"c": C_OFF}  # [evaluate] c_model is off by default (the use case runs it above)
        assert json.loads((evaluate / "forms.json").read_text()) == json.loads(canonical_json(s))
        header = (evaluate / "per_class.csv").read_text().splitlines()[0]
        assert header.startswith("form,class,n,correct,accuracy,wilson_low")
        results.append({**{f"quantize/{p.name}": p.read_bytes() for p in quantize.iterdir()},
                        **{f"evaluate/{p.name}": p.read_bytes() for p in evaluate.iterdir()},
                        "summaries": canonical_json([q, s]).encode()})
    assert sorted(results[0]) == ["evaluate/forms.csv", "evaluate/forms.json", "evaluate/mcnemar.csv",
                                  "evaluate/per_class.csv", f"quantize/{INT8_FILE}", "summaries"]
    assert results[0] == results[1]
