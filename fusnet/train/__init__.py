"""Training: one loop for every method, and what it needs around it.

Read in this order: :mod:`~fusnet.train.preflight` (a run's configuration checked against
the registries and the disk), :mod:`~fusnet.train.batches` (where batches come from: the
live images, the frozen backbone's :mod:`~fusnet.train.features` cache, or the
:mod:`~fusnet.train.top_stage` views), :mod:`~fusnet.train.optim`, :mod:`~fusnet.train.loop`
(the :class:`~fusnet.train.loop.Trainer`), :mod:`~fusnet.train.evaluation` (validation and
test codes), :mod:`~fusnet.train.checkpoints`, :mod:`~fusnet.train.writer` (what a run
leaves behind) and :mod:`~fusnet.train.lock` (one writer per run folder).
"""

from fusnet.train.loop import RunResult, Trainer, load_model, train, train_bit_lengths

__all__ = ["RunResult", "Trainer", "load_model", "train", "train_bit_lengths"]
