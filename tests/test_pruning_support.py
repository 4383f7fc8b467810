"""Synthetic rankings for pruning tests (arrays of the contract's shapes, seeded)."""

from __future__ import annotations

import numpy as np

from etdeploy.attribution.result import LayerAttribution, Ranking


def synthetic_layer(name: str, width: int, k: int, seed: int = 0, dead: tuple[int, ...] = ()) -> LayerAttribution:
    rng = np.random.default_rng(seed)
    live = np.ones(width, dtype=bool)
    live[list(dead)] = False
    rank = rng.normal(size=width)
    rank[~live] = 0.0
    ea_class = rng.normal(size=(k, width, k))
    ea_class[:, ~live, :] = 0.0
    return LayerAttribution(layer=name, live=live, activation_mean=np.abs(rng.normal(size=width)) * live,
                            rank=rank, rank_class=np.tile(rank, (k, 1)), ea=ea_class.mean(axis=0),
                            ea_class=ea_class, gap_mean=0.0, gap_max=0.0)


def synthetic_ranking(model, seed: int = 0, dead: dict[str, tuple[int, ...]] | None = None) -> Ranking:
    """A ranking of every dense layer of ``model`` with random ranks, carrying the model's fingerprint."""
    from etdeploy.models import dense_layers, weights_fingerprint

    k = model.classifier[-1].out_features
    layers = {d.name: synthetic_layer(d.name, d.width, k, seed + i, (dead or {}).get(d.name, ()))
              for i, d in enumerate(dense_layers(model))}
    classes = tuple(model.spec.class_names) if model.spec else tuple(f"class{i}" for i in range(k))
    return Ranking(layers=layers, classes=classes, class_counts=(10,) * k,
                   model_fingerprint=weights_fingerprint(model))


def test_synthetic_ranking_round_trips_through_the_ranking_contract(tmp_path):
    """The synthetic rankings used by the pruning tests satisfy the on-disk contract (shapes, keys)."""
    from etdeploy.attribution import load_ranking, save_ranking
    from etdeploy.models import build_model

    model = build_model("sequential-cnn", 3, input_size=16, layers="c4k3p1-r-m2", hidden=(6,))
    ranking = synthetic_ranking(model, seed=3, dead={"dense1": (2,)})
    save_ranking(ranking, tmp_path / "r")
    back = load_ranking(tmp_path / "r")
    assert back.model_fingerprint == ranking.model_fingerprint
    assert sorted(back.layers) == ["dense1", "flatten"]
    assert back.layer("flatten").ea_class.shape == (3, 4 * 8 * 8, 3)
    np.testing.assert_array_equal(back.layer("dense1").live, [True, True, False, True, True, True])
    np.testing.assert_array_equal(back.layer("dense1").rank, ranking.layer("dense1").rank)
