"""Neuron attribution speed: etdeploy vs two Captum peers, AlexNet-227, flatten (9216) + dense1 (4096).

    python benchmarks/attribution.py [--images 64] [--lig-images 4] [--steps 32] [--quick]

Work: integrated gradients of every neuron of the flatten and dense-1 layers of AlexNet-227 (random
weights, seed 0; 5 classes) for all 5 softmax outputs plus the loss of the true label, 32
Gauss-Legendre steps, on bundled training images.

- ``etdeploy``: ``rank_model`` (H once per image for both layers, G on the batched scaled copies,
  every class and the loss in one pass, expected attributions accumulated);
- peer (b) ``captum IG(G)``: ``IntegratedGradients`` on the softmax of ``G`` applied to precomputed
  ``H(x)``, one call per output (5 classes + loss) and layer, same batches: the same numbers;
- peer (a) ``captum LIG``: ``LayerIntegratedGradients`` on the whole model, black-image baseline, one
  call per output and layer (Captum refuses two nested layers in one call): what a Captum user writes. A different quantity (its
  baseline is ``H(black image)``, not 0) and much slower, so it runs on ``--lig-images`` images and
  its time is scaled per image to ``--images``.

Prints a table and writes reports/benchmarks/attribution.json. Timings are wall-clock (and process
CPU time) on whatever machine runs it; ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, print_table, write_json

LAYERS = ("flatten", "dense1")


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="images for etdeploy and peer (b)")
    parser.add_argument("--lig-images", type=int, default=2, help="images for peer (a), scaled per image")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="images per pass (etdeploy and peer b)")
    parser.add_argument("--quick", action="store_true", help="8 images, 2 for peer (a)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.lig_images = 8, 2

    import numpy as np
    import torch
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    from etdeploy.attribution import neuron_integrated_gradients, quadrature, rank_model
    from etdeploy.data import load_dataset
    from etdeploy.data.images import channel_mean_std, load_split, normalise
    from etdeploy.models import build_model, get_dense_layer, split_model

    ds = load_dataset("bundled")
    model = build_model("alexnet", len(ds.classes), seed=0, class_names=ds.classes).eval()
    samples = ds.split("train")[: args.images]
    split = load_split(samples, model.spec.input_size)
    mean, std = channel_mean_std(split.images)
    model.spec = model.spec.replace(mean=mean, std=std)
    images, labels = split.images, split.labels
    n_out = model.spec.num_classes
    steps, method, bs = args.steps, "gausslegendre", args.batch_size
    print(f"alexnet-227, layers {'+'.join(LAYERS)}, {len(labels)} images, {steps} steps, {n_out} classes + loss, "
          f"torch threads {torch.get_num_threads()}")

    # ---- etdeploy
    ranking, ours_wall, ours_cpu = _timed(lambda: rank_model(model, images, labels, layers=LAYERS, steps=steps,
                                                             method=method, batch_size=bs, progress=False))

    # ---- peer (b): Captum IG on G with precomputed H(x)
    work = copy.deepcopy(model).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    parts = {name: split_model(work, name) for name in LAYERS}

    def captum_ig():
        out = {name: ([], []) for name in LAYERS}
        for start in range(0, len(labels), bs):
            x = normalise(images[start:start + bs], mean, std)
            y = torch.as_tensor(labels[start:start + bs])
            with torch.no_grad():
                feats = work.features(x)
            for name in LAYERS:
                split_at = get_dense_layer(work, name).split
                with torch.no_grad():
                    h = work.classifier[:split_at](feats)
                g = parts[name][1]

                def prob(v, g=g):
                    return torch.softmax(g(v), dim=1)

                def loss(v, t, g=g):
                    return -torch.log_softmax(g(v), dim=1).gather(1, t.view(-1, 1)).squeeze(1)

                ig = IntegratedGradients(prob)
                cls = torch.stack([ig.attribute(h, baselines=0, target=j, n_steps=steps, method=method)
                                   for j in range(n_out)], dim=-1)
                lss = IntegratedGradients(loss).attribute(h, baselines=0, additional_forward_args=(y,),
                                                          n_steps=steps, method=method)
                out[name][0].append(cls.detach())
                out[name][1].append(lss.detach())
        return {name: (torch.cat(c), torch.cat(lo)) for name, (c, lo) in out.items()}

    captum_out, b_wall, b_cpu = _timed(captum_ig)

    # ---- numerical agreement with (b): per-image attributions and expected attributions
    w, a = quadrature(method, steps)
    max_rel = {}
    for name in LAYERS:
        h_fn, g = parts[name]
        ours_cls, ours_loss = [], []
        for start in range(0, len(labels), bs):
            with torch.no_grad():
                h = h_fn(normalise(images[start:start + bs], mean, std))
            ig = neuron_integrated_gradients(g, h, torch.as_tensor(labels[start:start + bs]), w, a)
            ours_cls.append(ig.attributions)
            ours_loss.append(ig.loss_attributions)
        oc, ol = torch.cat(ours_cls), torch.cat(ours_loss)
        cc, cl = (t.double() for t in captum_out[name])
        rels = [float((oc[..., j] - cc[..., j]).abs().max() / cc[..., j].abs().max()) for j in range(n_out)]
        rels.append(float((ol - cl).abs().max() / cl.abs().max()))
        ea = ranking.layer(name).ea
        rel_ea = float(np.abs(ea - cc.mean(0).numpy()).max() / np.abs(cc.mean(0).numpy()).max())
        max_rel[name] = {"per_image_max_rel": max(rels), "expected_attribution_max_rel": rel_ea}

    # ---- peer (a): Captum LayerIntegratedGradients on the whole model, scaled per image
    n_lig = min(args.lig_images, len(labels))
    lig_model = copy.deepcopy(model).eval()
    layer_modules = [lig_model.classifier[get_dense_layer(lig_model, name).split - 1] for name in LAYERS]

    def lig():
        x = normalise(images[:n_lig], mean, std)
        base = normalise(np.zeros_like(images[:n_lig]), mean, std)
        y = torch.as_tensor(labels[:n_lig])

        def prob(v):
            return torch.softmax(lig_model(v), dim=1)

        def loss(v, t):
            return -torch.log_softmax(lig_model(v), dim=1).gather(1, t.view(-1, 1)).squeeze(1)

        res = []
        for module in layer_modules:  # one layer per call: Captum cannot scale two nested layers at once
            res += [LayerIntegratedGradients(prob, module).attribute(x, baselines=base, target=j, n_steps=steps,
                                                                     method=method) for j in range(n_out)]
            res.append(LayerIntegratedGradients(loss, module).attribute(
                x, baselines=base, additional_forward_args=(y,), n_steps=steps, method=method))
        return res

    _, a_wall_raw, a_cpu_raw = _timed(lig)
    scale = len(labels) / n_lig
    a_wall, a_cpu = a_wall_raw * scale, a_cpu_raw * scale

    rows = [
        {"method": "etdeploy rank_model", "images": len(labels), "wall_s": ours_wall, "cpu_s": ours_cpu,
         "speedup_wall": 1.0, "speedup_cpu": 1.0, "max_rel_diff_vs_b": max(v["per_image_max_rel"]
                                                                            for v in max_rel.values())},
        {"method": "(b) captum IG(G) on H(x)", "images": len(labels), "wall_s": b_wall, "cpu_s": b_cpu,
         "speedup_wall": b_wall / ours_wall, "speedup_cpu": b_cpu / ours_cpu, "max_rel_diff_vs_b": 0.0},
        {"method": f"(a) captum LIG whole model (timed on {n_lig}, x{scale:g})", "images": len(labels),
         "wall_s": a_wall, "cpu_s": a_cpu, "speedup_wall": a_wall / ours_wall, "speedup_cpu": a_cpu / ours_cpu,
         "max_rel_diff_vs_b": None},
    ]
    print_table(rows, ["method", "images", "wall_s", "cpu_s", "speedup_wall", "speedup_cpu", "max_rel_diff_vs_b"])
    print("speedup = peer time / etdeploy time; max_rel_diff = max |ours - captum| / max |captum| per "
          "(layer, output), worst case")
    for name, v in max_rel.items():
        print(f"  {name}: per-image {v['per_image_max_rel']:.3g}, expected attribution "
              f"{v['expected_attribution_max_rel']:.3g}")
    targets = {"vs_a_speedup_min": 15.0, "vs_b_speedup_min": 2.0, "max_rel_diff_max": 1e-6}
    met = {"vs_a": rows[2]["speedup_wall"] >= 15.0, "vs_b": rows[1]["speedup_wall"] >= 2.0,
           "max_rel_diff": rows[0]["max_rel_diff_vs_b"] <= 1e-6}
    print(f"targets met (wall-clock): {met}")
    write_json("attribution", {
        "benchmark": "attribution", "model": "alexnet-227 (random weights, seed 0)", "layers": list(LAYERS),
        "images": len(labels), "lig_images": n_lig, "steps": steps, "method": method, "batch_size": bs,
        "outputs": f"{n_out} softmax classes + loss", "rows": rows, "agreement_vs_b": max_rel,
        "targets": targets, "targets_met": met, "environment": environment(),
        "note": "peer (a) time scaled per image from lig_images; peer (a) is a different quantity "
                "(baseline H(black image)); timings on a shared, loaded CPU are noisy",
    })


if __name__ == "__main__":
    main()
