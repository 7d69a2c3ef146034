"""The one training loop. Models declare modules, inputs and loss terms; this file does everything else.

Data stay in memory as tensors: an epoch is a random permutation of units (rows, or whole dialogues
for models that need them) cut into batches, each batch a few tensor gathers
(:meth:`AffectDataset.batch`), no DataLoader workers, no per-sample Python. The loop owns gradient
accumulation (``train.accumulate`` micro-batches per optimizer step, each weighted by its share of
the step's rows, so K x B equals one batch of K*B for mean losses), per-step warm-up and
linear/cosine decay, optional bfloat16 autocast, device placement, and data parallelism under
torchrun (:mod:`mmaffect.training.distributed`). Models change the step only through their hooks
(:class:`mmaffect.models.base.AffectModel`). Model and epoch selection look at the validation rows
only. All state is local to :func:`fit` (no module globals).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mmaffect.data.dataset import AffectDataset
from mmaffect.errors import ConfigError
from mmaffect.models.base import AffectModel, EpochState
from mmaffect.tasks import Task
from mmaffect.training import distributed
from mmaffect.training.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    prefixed,
    rng_tensors,
    save_tensors,
    unprefixed,
)
from mmaffect.training.config import TrainConfig

LOWER_IS_BETTER = {"loss", "mae"}
# model outputs kept at evaluation: the task heads, and per-modality relevance weights where a model has them
OUTPUT_KEYS = ("score", "logits", "tags", "relevance")


@dataclass
class FitResult:
    best_state: dict[str, Tensor]
    best_epoch: int
    epochs_run: int
    best_value: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs_run, 1)


def batches(rows: Tensor, batch_size: int, generator: torch.Generator | None) -> Iterator[Tensor]:
    """Shuffled (if a generator is given) batches of ``rows`` (row ids, or the rows of a dialogue
    table); a 1-unit tail joins the previous batch so BatchNorm never sees a batch of one."""
    order = rows[torch.randperm(len(rows), generator=generator)] if generator is not None else rows
    starts = list(range(0, len(order), batch_size))
    if len(starts) > 1 and len(order) - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(order)
        yield order[start:end]


class Feeder:
    """Turns units of ``rows`` into the batches ``model`` declares it needs (``AffectModel.needs``).

    Units are row ids, or for ``"dialogues"`` the rows of a (D, T) dialogue table. Token ids are
    computed once per dataset (:meth:`AffectDataset.tokenize`), and face crops read once
    (:meth:`AffectDataset.face_frames`), the first time a model needs them.
    """

    def __init__(self, data: AffectDataset, model: AffectModel, rows: np.ndarray):
        self.data = data
        self.needs = frozenset(model.needs)
        self.tokens = None
        if "tokens" in self.needs:
            if data.text is None:
                raise ConfigError(f"{data.name} keeps no raw text; model {type(model).__name__} needs token ids")
            data.tokenize(model.tokenizer, model.max_tokens)
            self.tokens = f"{model.tokenizer}@{model.max_tokens}"
        if "frames" in self.needs:
            if data.frame_loader is None and not data.frames:
                raise ConfigError(f"{data.name} keeps no face crops; model {type(model).__name__} needs them "
                                  "(train on a `cache:` folder written by `mmaffect extract`)")
            data.face_frames()
        if "dialogues" in self.needs:
            if data.dialogue_id is None:
                raise ConfigError(f"{data.name} has no dialogue ids; model {type(model).__name__} needs dialogues")
            self.units = data.dialogue_table(rows)
        else:
            self.units = torch.as_tensor(np.asarray(rows, dtype=np.int64))

    def epoch(self, units: Tensor, batch_size: int, generator: torch.Generator | None) -> list[Tensor]:
        """The batches of one pass over ``units`` (shuffled with a generator).

        Token batches are cut to their longest row, so with token ids the shuffled units are sorted
        by length within windows of 50 batches and the batches then shuffled: a batch holds rows of
        similar length (about half the padding of random batches) while every epoch still mixes.
        """
        parts = list(batches(units, batch_size, generator))
        if self.tokens is None or units.ndim == 2 or len(parts) < 2:  # dialogue units are not sorted by length
            return parts
        order = torch.cat(parts)
        lengths = self.data.tokens[self.tokens].lengths[order]
        window = 50 * batch_size
        for start in range(0, len(order), window):
            chunk = slice(start, start + window)
            order[chunk] = order[chunk][torch.sort(lengths[chunk], stable=True).indices]
        sized = list(batches(order, batch_size, None))
        if generator is None:
            return sized
        return [sized[i] for i in torch.randperm(len(sized), generator=generator).tolist()]

    def batch(self, units: Tensor) -> dict[str, Tensor]:
        if "dialogues" in self.needs:
            return self.data.dialogue_batch(units, self.needs, self.tokens)
        return self.data.batch(units, self.needs, self.tokens)

    def n_rows(self, units: Tensor) -> int:
        """Rows (turns) in a batch of units, known without building it."""
        return int((units >= 0).sum()) if units.ndim == 2 else len(units)


def _to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(cfg: TrainConfig | None, device: torch.device):
    if cfg is None or not cfg.bf16:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def predict_outputs(model: AffectModel, data: AffectDataset, rows: np.ndarray, batch_size: int = 4096,
                    keys: tuple[str, ...] | None = OUTPUT_KEYS, cfg: TrainConfig | None = None
                    ) -> dict[str, Tensor]:
    """Model outputs for ``rows``, in that order, in eval mode, as float32 CPU tensors.

    ``keys=None`` keeps every per-row output (features too). Under torchrun each rank predicts a
    shard of the units and every rank receives all rows, so metrics equal the single-process ones.
    """
    was_training = model.training
    model.eval()
    feeder = Feeder(data, model, rows)
    device = next(model.parameters(), torch.empty(0)).device
    parts: dict[str, list[Tensor]] = {}
    seen: list[Tensor] = []
    for units in feeder.epoch(distributed.shard(feeder.units), batch_size, None):
        batch = _to(feeder.batch(units), device)
        with _autocast(cfg, device):
            outputs = model(batch)
        index = batch["index"].cpu()
        seen.append(index)
        for key, value in outputs.items():
            if (keys is None or key in keys) and isinstance(value, Tensor) and value.ndim >= 1 \
                    and value.shape[0] == len(index):
                parts.setdefault(key, []).append(value.detach().float().cpu())
    model.train(was_training)
    local = {k: torch.cat(v) for k, v in parts.items()}
    local["index"] = torch.cat(seen) if seen else torch.empty(0, dtype=torch.long)
    gathered = distributed.all_gather_objects(local)
    index = torch.cat([g["index"] for g in gathered])
    rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    position = torch.full((int(rows_t.max()) + 1 if len(rows_t) else 0,), -1, dtype=torch.long)
    position[rows_t] = torch.arange(len(rows_t))
    where = position[index]
    out = {}
    for key in next((g for g in gathered if len(g["index"])), gathered[0]):  # a rank may have had no rows
        if key == "index":
            continue
        value = torch.cat([g[key] for g in gathered if key in g])
        ordered = torch.empty((len(rows), *value.shape[1:]), dtype=value.dtype)
        ordered[where] = value
        out[key] = ordered
    return out


def total_loss(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    return sum(weights.get(name, 1.0) * value for name, value in terms.items())


def evaluate_rows(model: AffectModel, data: AffectDataset, rows: np.ndarray, task: Task,
                  cfg: TrainConfig, metrics: bool = True) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Task loss and metrics on ``rows``; returns ``(metrics incl. "loss", predictions)``.

    ``metrics=False`` returns the loss alone: selecting on validation loss needs nothing else each
    epoch, and the scalar metrics (sklearn F1 etc.) cost more than a small model's validation pass.
    """
    outputs = predict_outputs(model, data, rows, cfg.eval_batch_size, cfg=cfg)
    targets = target_rows(data, rows)
    loss = float(total_loss(task.losses(outputs, targets), cfg.loss_weights))
    pred = task.predictions(outputs)
    if not metrics:
        return {"loss": loss}, pred
    return {"loss": loss, **task.metrics(pred, {k: v.numpy() for k, v in targets.items()})}, pred


def target_rows(data: AffectDataset, rows: np.ndarray) -> dict[str, Tensor]:
    """The ``score``/``label``/``labels`` targets of ``rows``."""
    index = torch.as_tensor(rows)
    return {k: getattr(data, k)[index] for k in ("score", "label", "labels") if getattr(data, k) is not None}


class FullBatchLBFGS(torch.optim.LBFGS):
    """L-BFGS run to convergence on the whole training set in each epoch's one step.

    Why: a convex model (the ``linear`` floor) early-stopped by a first-order optimizer ends short of
    its penalised optimum, and that shortfall, not the model, decided how it compared with
    scikit-learn's logistic regression on the same features. L-BFGS with a strong-Wolfe line search
    reaches the optimum in a few dozen full-batch iterations; ``train.lr`` is not used (the line search
    picks each step). torch's LBFGS has neither parameter groups nor weight decay, so the groups'
    ``weight_decay`` becomes an explicit ``0.5 * wd * ||p||^2`` term, the penalty whose gradient Adam's
    decay adds. The curvature history is not checkpointed: a resumed run restarts L-BFGS from the saved
    weights, which converges to the same optimum.
    """

    MAX_ITERATIONS = 1000

    def __init__(self, groups: list[dict], weight_decay: float):
        self.decay = [(p, g.get("weight_decay", weight_decay)) for g in groups for p in g["params"]]
        super().__init__([p for p, _ in self.decay], lr=1.0, max_iter=self.MAX_ITERATIONS,
                         line_search_fn="strong_wolfe")

    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        def penalised() -> Tensor:
            loss = closure()
            penalty = sum(0.5 * wd * p.pow(2).sum() for p, wd in self.decay if wd)
            if isinstance(penalty, Tensor):
                penalty.backward()
                return loss + penalty.detach()
            return loss
        return super().step(penalised)

    def state_dict(self) -> dict:
        return {"state": {}, "param_groups": super().state_dict()["param_groups"]}


def make_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over parameter groups (a group's own lr/weight_decay win over ``cfg``).

    The fused CPU kernels of Adam/AdamW/SGD update a 9 M-weight TFN ~7x faster than the default.
    """
    if cfg.optimizer == "lbfgs":
        return FullBatchLBFGS(groups, cfg.weight_decay)
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, fused=True, **kwargs)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, **kwargs)
    return torch.optim.SGD(groups, momentum=0.9, fused=True, **kwargs)


class StepSchedule:
    """Learning-rate factor per optimizer step: linear warm-up over ``warmup_epochs`` plus
    ``warmup_ratio`` of all steps, then constant (``none``/``plateau``), linear decay to 0 or
    cosine decay to 0 at the last step of ``cfg.epochs``. Groups keep their own base lr."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.kind = cfg.scheduler
        self.total = max(cfg.epochs * steps_per_epoch, 1)
        self.warmup = cfg.warmup_epochs * steps_per_epoch + round(cfg.warmup_ratio * self.total)

    def factor(self, step: int) -> float | None:
        """Factor for the 0-based optimizer ``step``; None = leave the lr alone (plateau's business)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "linear":
            return max(self.total - step, 0) / max(self.total - self.warmup, 1)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min((step - self.warmup) / max(self.total - self.warmup, 1), 1)))
        return 1.0 if self.kind == "none" else None

    def apply(self, optimizers: list[torch.optim.Optimizer], step: int) -> None:
        factor = self.factor(step)
        if factor is None:
            return
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor


def _improved(value: float, best: float, select: str) -> bool:
    if math.isnan(value):
        return False
    return value < best if select in LOWER_IS_BETTER else value > best


def _optimizers(model: AffectModel, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    optimizers = model.configure_optimizers(cfg) or [make_optimizer(model.param_groups(cfg), cfg)]
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
    return optimizers


def _optim_prefix(i: int) -> str:
    return "optim/" if i == 0 else f"optim{i}/"


def _check_finite(loss: Tensor, terms: dict[str, Tensor], epoch: int) -> None:
    bad = torch.tensor([0.0 if torch.isfinite(loss.detach()) else 1.0])
    if float(distributed.all_reduce_sum(bad)):  # every rank stops together
        raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}: "
                                 + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items()))


def _training_loss(model: AffectModel, batch: dict[str, Tensor], task: Task, cfg: TrainConfig, epoch: int,
                   device: torch.device) -> Tensor:
    """The weighted training loss of one batch, refused (on every rank) when it is not finite."""
    with _autocast(cfg, device):
        terms = model.training_step(batch, task)
        loss = total_loss(terms, cfg.loss_weights)
    _check_finite(loss, terms, epoch)
    return loss


def _full_batch_step(model: AffectModel, optimizer: torch.optim.Optimizer, batch: dict[str, Tensor], task: Task,
                     cfg: TrainConfig, epoch: int, n_rows: int, device: torch.device) -> Tensor:
    """One closure-driven optimizer step (L-BFGS) on the whole training batch; returns the
    ``[loss x rows, rows]`` of the first evaluation, the loss before the step as for other optimizers."""
    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = _training_loss(model, batch, task, cfg, epoch, device)
        loss.backward()
        return loss.detach()

    first = optimizer.step(closure)
    optimizer.zero_grad(set_to_none=True)
    return torch.tensor([float(first) * n_rows, n_rows], dtype=torch.float64)


def fit(model: AffectModel, data: AffectDataset, task: Task, train_rows: np.ndarray, valid_rows: np.ndarray,
        cfg: TrainConfig, seed: int, workdir: Path | None = None, progress: bool = True,
        desc: str = "train", on_epoch: Callable[[dict], None] | None = None) -> FitResult:
    """Train ``model`` on ``train_rows``, early-stopping and selecting on ``valid_rows``.

    With ``workdir``, the full training state (weights incl. buffers, optimizers, schedule position,
    RNG, best weights) is saved atomically to ``workdir/last.safetensors`` at the end of an epoch once
    ``cfg.checkpoint_seconds`` have passed since the last save (and after the final epoch), by rank 0
    only. An interrupted call resumes from it; since training is deterministic given the restored RNG
    states, it ends with the same weights as an uninterrupted one. ``on_epoch`` receives each epoch's
    history entry (validation value included) as it is made, e.g. to report to a Ray Tune scheduler.
    """
    if len(train_rows) == 0 or len(valid_rows) == 0:
        raise ConfigError(f"{data.name}: empty training ({len(train_rows)}) or validation ({len(valid_rows)}) rows")
    device = distributed.device()
    model.to(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    feeder = Feeder(data, model, train_rows)
    optimizers = _optimizers(model, cfg)
    steps_per_epoch = math.ceil(len(list(batches(feeder.units, cfg.batch_size, None))) / cfg.accumulate)
    if cfg.optimizer == "lbfgs" and (steps_per_epoch != 1 or distributed.world_size() > 1):
        raise ConfigError(f"train.optimizer=lbfgs fits the whole training set as one batch in one process: set "
                          f"train.batch_size >= {len(feeder.units)} and run without torchrun")
    schedule = StepSchedule(cfg, steps_per_epoch)
    mode = "min" if cfg.select in LOWER_IS_BETTER else "max"
    plateaus = [torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode=mode, factor=0.5, patience=max(cfg.patience // 3, 1))
                for o in optimizers] if cfg.scheduler == "plateau" else []
    select = cfg.select
    best_value = math.inf if select in LOWER_IS_BETTER else -math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, bad_epochs, start_epoch, seconds, step = 0, 0, 0, 0.0, 0
    history: list[dict] = []
    state_path = workdir / "last.safetensors" if workdir is not None else None
    if state_path is not None and state_path.exists():
        tensors, meta = load_tensors(state_path)
        model.load_state_dict(unprefixed(tensors, "model/"))
        best_state = unprefixed(tensors, "best/")
        for i, (optimizer, plain) in enumerate(zip(optimizers, meta["optimizers"], strict=True)):
            optimizer.load_state_dict(optimizer_from_tensors(unprefixed(tensors, _optim_prefix(i)), plain))
        for plateau, plain in zip(plateaus, meta["plateaus"], strict=True):
            plateau.load_state_dict(plain)
        torch.set_rng_state(tensors["rng/torch"])
        generator.set_state(tensors["rng/shuffle"])
        start_epoch, best_epoch, best_value = meta["epoch"], meta["best_epoch"], meta["best_value"]
        bad_epochs, seconds, history, step = meta["bad_epochs"], meta["seconds"], meta["history"], meta["step"]

    params = [p for p in model.parameters() if p.requires_grad]
    saved_at = time.monotonic()
    bar = tqdm(range(start_epoch, cfg.epochs), desc=desc, disable=not progress or not distributed.is_main(),
               leave=False, initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        if bad_epochs >= cfg.patience:
            break
        started = time.perf_counter()
        model.train()
        running = torch.zeros(2, dtype=torch.float64)  # loss x rows, rows (summed over ranks at epoch end)
        micro = feeder.epoch(feeder.units, cfg.batch_size, generator)
        for first in range(0, len(micro), cfg.accumulate):
            group = micro[first:first + cfg.accumulate]
            step_rows = sum(feeder.n_rows(units) for units in group)
            schedule.apply(optimizers, step)
            if cfg.optimizer == "lbfgs":
                running += _full_batch_step(model, optimizers[0], _to(feeder.batch(group[0]), device), task, cfg,
                                            epoch, step_rows, device)
                step += 1
                continue
            for units in group:
                local = distributed.shard(units)
                n_local = feeder.n_rows(local)
                if n_local == 0:  # more ranks than units: take part in the collectives only
                    _check_finite(torch.zeros(()), {}, epoch)
                    continue
                loss = _training_loss(model, _to(feeder.batch(local), device), task, cfg, epoch, device)
                (loss * (n_local / step_rows)).backward()
                running += torch.tensor([float(loss.detach()) * n_local, n_local], dtype=torch.float64)
            distributed.all_reduce_gradients(params)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            for optimizer in optimizers:
                optimizer.step()
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            step += 1
        loss_sum, rows_seen = distributed.all_reduce_sum(running).tolist()
        train_loss = loss_sum / max(rows_seen, 1)
        model.on_epoch_end(EpochState(
            epoch=epoch + 1, data=data, train_rows=train_rows,
            outputs=lambda rows: predict_outputs(model, data, rows, cfg.eval_batch_size, keys=None, cfg=cfg)))
        valid_metrics, _ = evaluate_rows(model, data, valid_rows, task, cfg, metrics=select != "loss")
        value = valid_metrics.get(select)
        if value is None:
            raise ConfigError(f"train.select={select!r} is not a validation metric; "
                              f"choose from {', '.join(valid_metrics)}")
        if epoch >= cfg.warmup_epochs:
            for plateau in plateaus:
                plateau.step(value)
        if _improved(value, best_value, select):
            best_value, best_epoch, bad_epochs = value, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        epoch_seconds = time.perf_counter() - started
        seconds += epoch_seconds
        history.append({"epoch": epoch + 1, "seconds": epoch_seconds, "train_loss": train_loss,
                        "valid_loss": valid_metrics["loss"], f"valid_{select}": value})
        bar.set_postfix(train=f"{train_loss:.4f}", valid=f"{valid_metrics['loss']:.4f}")
        if on_epoch is not None:
            on_epoch(history[-1])
        last_epoch = bad_epochs >= cfg.patience or epoch + 1 == cfg.epochs
        if state_path is not None and distributed.is_main() and (
                time.monotonic() - saved_at >= cfg.checkpoint_seconds or last_epoch):
            saved_at = time.monotonic()
            tensors = prefixed(model.state_dict(), "model/") | prefixed(best_state, "best/") | rng_tensors(generator)
            plains = []
            for i, optimizer in enumerate(optimizers):
                opt_tensors, opt_plain = optimizer_to_tensors(optimizer.state_dict())
                tensors |= prefixed(opt_tensors, _optim_prefix(i))
                plains.append(opt_plain)
            save_tensors(state_path, tensors,
                         {"epoch": epoch + 1, "best_epoch": best_epoch, "best_value": best_value,
                          "bad_epochs": bad_epochs, "seconds": seconds, "history": history, "step": step,
                          "optimizers": plains, "plateaus": [p.state_dict() for p in plateaus]})
    bar.close()
    return FitResult(best_state=best_state, best_epoch=best_epoch, epochs_run=len(history),
                     best_value=best_value, history=history, seconds=seconds)
