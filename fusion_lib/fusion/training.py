"""The one training loop of fusion_lib: Adam on in-memory tensors with early stopping on validation.

Every trainable piece (expert probes, the mixture of experts, label-space projections) is a small
``nn.Module`` trained on precomputed features, so the loop keeps whole tensors in memory, draws
mini-batches by index (or uses the full batch), and restores the best validation state at the end.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from tqdm.auto import tqdm

from fusion_lib.data import checks

Batch = tuple[Tensor, ...]
T = TypeVar("T")
LossFn = Callable[[nn.Module, Batch], Tensor]

# The one grid of mixing weights in [0, 1] chosen on validation: the label-space blend weight and the
# two-stage gates' shrinkage towards uniform.
BLEND_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class TrainConfig:
    """Optimisation settings shared by every fusion model.

    ``batch_size=None`` trains full-batch; ``patience`` is the number of epochs without a
    validation improvement after which training stops (the best state is restored); ``threads``
    caps torch's CPU threads while training (``None`` leaves torch's setting): these models are so
    small that extra OpenMP threads only add synchronisation, which costs ten times the run time
    when other processes share the cores.
    """

    epochs: int = 60
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int | None = 256
    patience: int = 8
    device: str = "cpu"
    threads: int | None = 1
    progress: bool = False

    def __post_init__(self) -> None:
        checks.integer(self.epochs, "epochs", 1)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr):
            raise checks.ParameterError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        checks.device(self.device)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (full batch), got {self.batch_size}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")


@dataclass
class TrainHistory:
    """Per-epoch losses, the epoch whose weights were kept, and throughput."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    samples_seen: int = 0
    val_samples_seen: int = 0
    macs_per_sample: int = 0

    @property
    def flops(self) -> float:
        """The fit's arithmetic, about: two FLOPs a multiply-add, a backward pass twice a forward one, and
        every validation pass (from the convolutions and linear layers of one sample's forward pass)."""
        return 2.0 * self.macs_per_sample * (3 * self.samples_seen + self.val_samples_seen)

    @property
    def samples_per_s(self) -> float:
        """Training examples processed per second of optimisation (validation included in the time)."""
        return self.samples_seen / self.seconds if self.seconds > 0 else float("nan")


@contextmanager
def deterministic() -> Iterator[None]:
    """Within the block torch uses deterministic kernels (warning where it has none); restored after.

    Deterministic mode also fills every new tensor with NaN before a kernel writes it, a guard against
    kernels that read memory they did not write. None of ours does: one seed of every method gives the
    same outputs, bit for bit, without it. On these small models the fill writes every gathered
    mini-batch and every activation twice (a 32 px thumbnail gate's step: 7.7 ms with it, 6.6 without,
    on the 2-core CPU), so it is off within the block."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]


@contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Within the block torch, and the BLAS and OpenMP libraries that numpy, scipy and scikit-learn call,
    use at most ``n`` CPU threads (``None``: unchanged); restored after. The BLAS cap matters as much as
    torch's: scikit-learn's stacking fit ran 15 times slower with two BLAS threads than with one while
    another process held the second core (measured on the 2-core CPU)."""
    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n) if n is not None else nullcontext():
            yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def to_tensors(arrays: Sequence[np.ndarray], device: torch.device) -> Batch:
    """Numpy arrays -> tensors on ``device`` (float arrays as float32, integer arrays as int64)."""
    out = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a))
        t = t.float() if t.is_floating_point() else t.long()
        out.append(t.to(device))
    return tuple(out)


def _check_batch(batch: Batch, name: str) -> int:
    lengths = [len(t) for t in batch]
    if not lengths or len(set(lengths)) != 1:
        raise ValueError(f"{name} tensors must share their first dimension, got lengths {lengths}")
    if lengths[0] == 0:
        raise ValueError(f"{name} is empty")
    return lengths[0]


def count_macs(model: nn.Module, forward: Callable[[], object]) -> int:
    """Multiply-adds per sample of every Conv2d and Linear layer of ``model`` that ``forward()`` runs
    (counted with forward hooks: a convolution's first output sample, a linear layer's weights)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output[0].numel() * kernel

    def linear_hook(module: nn.Linear, _inputs: tuple, output: Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        forward()
    finally:
        for h in hooks:
            h.remove()
    return total


_RECORDERS: list[list[TrainHistory]] = []


@contextmanager
def recorded_fits() -> Iterator[list[TrainHistory]]:
    """Within the block every ``fit_module`` call appends its ``TrainHistory`` to the yielded list (what a
    benchmark reads: each fit's time and arithmetic)."""
    fits: list[TrainHistory] = []
    _RECORDERS.append(fits)
    try:
        yield fits
    finally:
        _RECORDERS.remove(fits)


def fit_module(
    model: nn.Module,
    loss_fn: LossFn,
    train: Batch,
    val: Batch | None,
    config: TrainConfig,
    seed: int = 0,
    val_fn: Callable[[nn.Module, Batch], float] | None = None,
) -> TrainHistory:
    """Train ``model`` in place with Adam on ``loss_fn(model, batch)``; early-stop on ``val``.

    ``train`` and ``val`` are tuples of tensors sharing their first dimension (already on the
    model's device). ``val_fn`` scores the validation tuple, lower is better; by default it is
    ``loss_fn`` in eval mode. Without ``val`` the model trains for ``config.epochs``.
    """
    n = _check_batch(train, "train")
    if val is not None:
        _check_batch(val, "val")
    with num_threads(config.threads):
        history = _fit(model, loss_fn, train, val, config, seed, val_fn, n)
    for fits in _RECORDERS:
        fits.append(history)
    return history


def _fit(
    model: nn.Module,
    loss_fn: LossFn,
    train: Batch,
    val: Batch | None,
    config: TrainConfig,
    seed: int,
    val_fn: Callable[[nn.Module, Batch], float] | None,
    n: int,
) -> TrainHistory:
    score = val_fn or (lambda m, b: float(loss_fn(m, b)))
    batch_size = n if config.batch_size is None else min(config.batch_size, n)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory()
    best, best_state, stale = float("inf"), None, 0
    start = time.perf_counter()
    epochs = tqdm(range(config.epochs), desc=type(model).__name__, disable=not config.progress, leave=False)
    for epoch in epochs:
        model.train()
        order = torch.randperm(n, generator=generator).to(train[0].device) if batch_size < n else None
        total = 0.0
        for lo in range(0, n, batch_size):
            # index_select, not t[rows]: the same rows, gathered twice as fast on CPU; a mini-batch is
            # gathered when it is used, so that it is still in cache for the forward pass (one gather of
            # the whole permuted split per epoch measured slower on 2,048-d features)
            batch = (
                train
                if order is None
                else tuple(t.index_select(0, order[lo : lo + batch_size]) for t in train)
            )
            if history.macs_per_sample == 0:  # counted once, on the first step's forward pass
                outputs: list[Tensor] = []
                history.macs_per_sample = count_macs(model, lambda: outputs.append(loss_fn(model, batch)))
                loss = outputs[0]
            else:
                loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch[0])
        history.train_loss.append(total / n)
        history.samples_seen += n
        if val is None:
            continue
        model.eval()
        with torch.no_grad():
            current = score(model, val)
        history.val_loss.append(current)
        history.val_samples_seen += len(val[0])
        if current < best - 1e-6:
            best, stale, history.best_epoch = current, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if val is None:
        history.best_epoch = len(history.train_loss) - 1
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


class InputMemo:
    """Results a fitted model computes once per key (a split, a top-k) of the same inputs.

    Inputs are compared by identity, so another FeatureSet is never served a result computed on a
    different one; a memo pickles empty, so a fit-cached model stores only what it learned."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[tuple[object, ...], Any]] = {}

    def get(self, key: Hashable, inputs: tuple[object, ...], compute: Callable[[], T]) -> T:
        """The value stored under ``key`` for these very ``inputs``, else ``compute()`` (then stored)."""
        hit = self._entries.get(key)
        if hit is not None and len(hit[0]) == len(inputs) and all(a is b for a, b in zip(hit[0], inputs)):
            return hit[1]
        value = compute()
        self._entries[key] = (inputs, value)
        return value

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (InputMemo, ())


@torch.no_grad()
def predict_in_batches(
    fn: Callable[[Batch], Tensor | tuple[Tensor, ...]], inputs: Batch, batch_size: int = 4096
) -> Tensor | tuple[Tensor, ...]:
    """Apply ``fn`` to slices of ``inputs`` and concatenate (each output, if ``fn`` returns a tuple).

    Bounds memory on large evaluation splits.
    """
    n = _check_batch(inputs, "inputs")
    parts = [fn(tuple(t[lo : lo + batch_size] for t in inputs)) for lo in range(0, n, batch_size)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p) for p in zip(*parts))
    return torch.cat(parts)
