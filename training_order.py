"""The order and the random draws of a training epoch, so that an epoch stopped mid-way continues exactly.

:class:`EpochSampler` is torch's DistributedSampler (this rank's share of a shuffled
epoch, from (seed, epoch)) that can also continue an interrupted epoch: `resume(order,
index)` makes its next pass the rest of the saved order.

:class:`SeededItems` draws every training item (clip sampling, crops, flips,
RandAugment, masks, the replacement of a bad video) from a seed of its own, derived from
(seed, epoch, index) and passed along by the sampler. An item is then the same whichever
worker builds it and whatever that worker built before, so a loader holds no state the
rest of an epoch depends on, and the position within an epoch is just the order and an
index (preemption.py). It also makes the clips independent of --num_workers and of the
number of processes.
"""
import random

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from dist_utils import derive_seed


class EpochSampler(DistributedSampler):
    """Yields (index, seed) pairs for :class:`SeededItems`: this rank's shuffled share of the epoch set by
    `set_epoch`, or, once after `resume`, the rest of a saved order."""

    def __init__(self, dataset, **kwargs):
        super().__init__(dataset, **kwargs)
        self._order, self._index = None, 0

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self._order, self._index = None, 0

    def resume(self, order, index):
        """The next pass yields order[index:] (an epoch's order as `epoch_order` gave it); set_epoch first."""
        self._order, self._index = list(order), index

    def epoch_order(self):
        """This rank's order of the current epoch: the dataset indices of all its items, in order."""
        if self._order is None:
            self._order = list(super().__iter__())
        return self._order

    def __iter__(self):
        order, start = self.epoch_order(), self._index
        self._index = 0  # resumed once: a second pass of the same epoch starts at its beginning
        return iter([(index, derive_seed(self.seed, self.epoch, index)) for index in order[start:]])


class SeededItems(Dataset):
    """`dataset` whose item (index, seed) is dataset[index] drawn with python's, numpy's and torch's CPU
    generators seeded by `seed`; the caller's generators go on afterwards as if nothing had been drawn
    (with --num_workers 0 the items are built in the training process, whose dropout and mixing draw from
    them too)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)
