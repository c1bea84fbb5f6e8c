import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sparta.config import SamplerConfig
from sparta.data.store import DataError
from sparta.sampling import (
    ContrastiveBatchSampler,
    ContrastiveDataset,
    FieldDataset,
    WindowDataset,
    delta_probabilities,
)


def triplets(batches: list[list[tuple[int, int]]]) -> np.ndarray:
    """(n_triplets, 3) days ordered anchor, soft, hard."""
    return np.array([[t for t, _ in batch] for batch in batches]).reshape(-1, 3)


def day_of(x: torch.Tensor, store) -> torch.Tensor:
    """Invert the tiny store's encoding: the spatial mean of channel 0 in physical units is the day."""
    return store.denormalise(x)[..., 0, :, :].mean(dim=(-2, -1)).round().long()


# --- Δ distribution -------------------------------------------------------------------------------

def test_delta_probabilities_known_values():
    np.testing.assert_allclose(delta_probabilities(5, 0.1), [0.2419, 0.2188, 0.1980, 0.1792, 0.1621], atol=1e-4)
    np.testing.assert_allclose(delta_probabilities(3, 0.0), [1 / 3] * 3)


def test_delta_frequencies_follow_the_distribution():
    sampler = ContrastiveBatchSampler(5000, 126, SamplerConfig(), seed=0, hard_negatives=True)
    deltas = np.array([d for batch in sampler for _, d in batch])
    expected = delta_probabilities(5, 0.1) * deltas.size
    observed = np.bincount(deltas, minlength=6)[1:]
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert deltas.size > 4000 and chi2 < 18.5  # df=4, p ~ 0.001


# --- hard-negative batches ------------------------------------------------------------------------

def test_triplet_order_and_distances():
    n = 3000
    sampler = ContrastiveBatchSampler(n, 126, SamplerConfig(), seed=1, hard_negatives=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == (n - 10) // 42
    assert all(len(b) == 126 for b in batches)
    tri = triplets(batches)
    assert tri.min() >= 5 and tri.max() < n - 5
    assert len(set(tri[:, 0])) == len(tri)  # each anchor once per epoch
    hard = np.abs(tri[:, 2] - tri[:, 0])
    assert hard.min() >= 11 and hard.max() <= 40
    assert np.abs(tri[:, 1] - tri[:, 0]).min() >= 1000
    assert (tri[:, 2] < tri[:, 0]).any() and (tri[:, 2] > tri[:, 0]).any()  # both sides


def test_short_split_falls_back_to_the_farthest_days(caplog):
    n, cfg = 1600, SamplerConfig()
    with caplog.at_level(logging.WARNING, logger="sparta.sampling"):
        sampler = ContrastiveBatchSampler(n, 126, cfg, seed=2, hard_negatives=True)
    warnings = [r for r in caplog.records if "soft negative" in r.getMessage()]
    assert len(warnings) == 1 and "410 of 1590" in warnings[0].getMessage()  # anchors 595..1004
    caplog.clear()
    tri = triplets(list(sampler))
    assert not caplog.records  # warned once, at construction
    reach = np.maximum(tri[:, 0] - 5, n - 6 - tri[:, 0])
    dist = np.abs(tri[:, 1] - tri[:, 0])
    far_enough = reach >= cfg.soft_min
    assert far_enough.any() and (~far_enough).any()
    assert (dist[far_enough] >= cfg.soft_min).all()
    assert (dist[~far_enough] >= np.ceil(0.9 * reach[~far_enough])).all()
    assert tri.min() >= 5 and tri.max() < n - 5


def test_tiny_split_hard_fallback_stays_valid(caplog):
    with caplog.at_level(logging.WARNING, logger="sparta.sampling"):
        sampler = ContrastiveBatchSampler(30, 6, SamplerConfig(), seed=3, hard_negatives=True)
    assert any("hard negative" in r.getMessage() for r in caplog.records)
    tri = triplets(list(sampler))
    assert tri.min() >= 5 and tri.max() < 25 and (tri[:, 1:] != tri[:, :1]).all()


def test_too_short_split_is_a_clear_error():
    with pytest.raises(DataError, match="12 days has 2 anchor days"):
        ContrastiveBatchSampler(12, 126, SamplerConfig(), seed=0, hard_negatives=True)


# --- epochs, ranks, caps --------------------------------------------------------------------------

def test_set_epoch_reshuffles_deterministically():
    def order(epoch: int, seed: int = 0) -> list:
        sampler = ContrastiveBatchSampler(500, 30, SamplerConfig(), seed=seed, hard_negatives=True)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0) == order(0) and order(3) == order(3)
    assert order(0) != order(1) and order(0, seed=1) != order(0)


def test_plain_batches_and_rank_partition_is_disjoint_and_covering():
    n, world = 5 * 2 + 120, 3  # 120 anchors = 3 ranks x 4 batches x 10
    per_rank = [list(ContrastiveBatchSampler(n, 10, SamplerConfig(), seed=4, hard_negatives=False,
                                             rank=r, world_size=world)) for r in range(world)]
    assert [len(b) for b in per_rank] == [4, 4, 4]
    anchors = [{t for batch in batches for t, _ in batch} for batches in per_rank]
    assert all(len(a) == 40 for a in anchors)
    assert not (anchors[0] & anchors[1] or anchors[0] & anchors[2] or anchors[1] & anchors[2])
    assert set.union(*anchors) == set(range(5, n - 5))


def test_rank_partition_with_triplets_shares_the_global_schedule():
    single = list(ContrastiveBatchSampler(400, 12, SamplerConfig(), seed=5, hard_negatives=True))
    ranks = [list(ContrastiveBatchSampler(400, 12, SamplerConfig(), seed=5, hard_negatives=True,
                                          rank=r, world_size=2)) for r in range(2)]
    assert ranks[0] == single[0::2][: len(ranks[0])] and ranks[1] == single[1::2][: len(ranks[1])]
    a0, a1 = set(triplets(ranks[0])[:, 0]), set(triplets(ranks[1])[:, 0])
    assert not a0 & a1


def test_max_batches_caps_the_epoch():
    sampler = ContrastiveBatchSampler(3000, 126, SamplerConfig(), seed=0, hard_negatives=True, max_batches=3)
    assert len(sampler) == 3 and len(list(sampler)) == 3


# --- datasets -------------------------------------------------------------------------------------

def test_contrastive_dataset_reads_the_right_days(tiny_store):
    ds = ContrastiveDataset(tiny_store, "val")
    assert len(ds) == 60
    item = ds[(10, 3)]
    assert item["t"] == 10 and item["delta"] == 3
    for key, day in (("minus", 187), ("anchor", 190), ("plus", 193)):
        x = item[key]
        assert x.dtype == torch.float32 and x.shape == (2, 8, 16)
        torch.testing.assert_close(x, torch.from_numpy(tiny_store.normalise(tiny_store.fields[day])))
        assert day_of(x, tiny_store).item() == day
    with pytest.raises(IndexError):
        ds[(58, 3)]


def test_contrastive_dataset_with_the_batch_sampler(tiny_store):
    ds = ContrastiveDataset(tiny_store, "train")
    sampler = ContrastiveBatchSampler(len(ds), 12, SamplerConfig(soft_min=100), seed=0, hard_negatives=True)
    batch = next(iter(DataLoader(ds, batch_sampler=sampler)))
    assert batch["anchor"].shape == (12, 2, 8, 16)
    torch.testing.assert_close(day_of(batch["anchor"], tiny_store), batch["t"])
    torch.testing.assert_close(day_of(batch["plus"], tiny_store), batch["t"] + batch["delta"])
    torch.testing.assert_close(day_of(batch["minus"], tiny_store), batch["t"] - batch["delta"])


def test_field_dataset(tiny_store):
    ds = FieldDataset(tiny_store, "test")
    assert len(ds) == 60
    item = ds[7]
    assert item["t"] == 7 and item["season"] == 3  # day 247 = 2000-09-04: SON
    assert ds[0]["season"] == 2  # day 240 = 2000-08-28: JJA
    assert item["x"].shape == (2, 8, 16) and day_of(item["x"], tiny_store).item() == 247


def test_window_dataset_length_and_targets(tiny_store):
    ds = WindowDataset(tiny_store, "val", lookback=5, stride=3, horizon=2)
    assert len(ds) == (60 - 5 - 2) // 3 + 1 == 18
    last = ds[17]
    assert last["start"] == 51
    assert last["context"].shape == (5, 2, 8, 16) and last["target"].shape == (2, 2, 8, 16)
    assert day_of(last["context"], tiny_store).tolist() == list(range(231, 236))
    assert day_of(last["target"], tiny_store).tolist() == [236, 237]
    with pytest.raises(IndexError):
        ds[18]


def test_window_dataset_too_short_split_says_what_is_needed(tiny_store):
    with pytest.raises(ValueError, match="has 60 days.*needs 61"):
        WindowDataset(tiny_store, "val", lookback=30, stride=1, horizon=31)
    exact = WindowDataset(tiny_store, "val", lookback=30, stride=7, horizon=30)
    assert len(exact) == 1 and day_of(exact[0]["target"], tiny_store)[-1].item() == 239
