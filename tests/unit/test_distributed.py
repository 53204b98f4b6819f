"""Sharding for data-parallel training: the ranks' shares add up to what one process would do."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeres.distributed import World
from edgeres.errors import ConfigError
from edgeres.train import TrainConfig
from edgeres.train.loader import augment_batch as _augment
from edgeres.train.loop import _train


def test_parts_partition_the_global_batch():
    idx = np.arange(64)
    parts = [idx[World(r, 4).part(64)] for r in range(4)]
    assert np.array_equal(np.concatenate(parts), idx) and {len(p) for p in parts} == {16}


def test_eval_shards_cover_an_uneven_set():
    n = 1001
    shards = [np.arange(n)[World(r, 3).shard(n)] for r in range(3)]
    assert np.array_equal(np.concatenate(shards), np.arange(n))


@pytest.mark.parametrize("mode", ["flip", "flip+crop"])
def test_augmenting_shares_equals_augmenting_the_batch(mode):
    x = torch.randn(8, 1, 10, 10)
    whole = _augment(x, mode, torch.Generator().manual_seed(3))
    shares = [_augment(x[World(r, 2).part(8)], mode, torch.Generator().manual_seed(3), 8, World(r, 2).part(8))
              for r in range(2)]
    assert torch.equal(torch.cat(shares), whole)


def test_global_batch_must_divide_among_processes(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 3"):
        _train(TrainConfig(batch_size=64), tmp_path / "m.pt", False, None, World(0, 3), torch.device("cpu"))
