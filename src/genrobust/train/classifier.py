"""Training the paper's classifiers: standard, on augmented data, PGD adversarial, defensive distillation.

Training is resumable: a checkpoint is written after every epoch, and each epoch's data order and dropout
masks come from seeds derived from (seed, epoch), so a resumed run ends with exactly the weights an
uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Dataset, load_dataset
from ..errors import GenrobustError
from ..models.classifiers import CLASSIFIER_ARCHS, ConvClassifier, build_classifier
from ..models.io import save_model
from .checkpoint import load_checkpoint, save_checkpoint
from .common import accuracy, predictions, progress, resolve_device, sub_seed, training_data

METHODS = ("standard", "pgd", "distill")
#: what a classifier trains on (the GANs also take disjoint halves, ``train.common.DATA_VARIANTS``)
CLASSIFIER_DATA = ("standard", "augmented")
#: ``constant``, or ``cosine``: decays to 0 over all steps
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that determines a trained classifier (it is stored in the weights' metadata)."""

    dataset: str = "mnist"
    arch: str = "small"
    data: str = "standard"  # standard | augmented
    method: str = "standard"  # standard | pgd (Madry et al. 2018) | distill (Papernot et al. 2016)
    epochs: float = 5  # may be fractional: 0.25 of the 4× augmented set costs one pass over the standard set
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 over all steps)
    seed: int = 0
    pgd_eps: float = 0.3
    pgd_steps: int = 40
    pgd_step_size: float = 0.01
    temperature: float = 100.0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, float) and self.epochs.is_integer():
            object.__setattr__(self, "epochs", int(self.epochs))  # 6.0 and 6 are the same recipe, stored as 6
        if self.arch not in CLASSIFIER_ARCHS:
            raise GenrobustError(f"unknown architecture {self.arch!r}; choose one of {', '.join(CLASSIFIER_ARCHS)}")
        if self.data not in CLASSIFIER_DATA:
            raise GenrobustError(f"classifier data must be one of {', '.join(CLASSIFIER_DATA)}, not {self.data!r}")
        if self.method not in METHODS:
            raise GenrobustError(f"unknown training method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise GenrobustError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if not self.epochs > 0 or self.batch_size < 1 or self.lr <= 0:
            raise GenrobustError("epochs must be > 0, batch_size ≥ 1 and lr > 0")
        if self.method == "pgd" and not (0 < self.pgd_eps <= 1 and self.pgd_steps >= 1 and self.pgd_step_size > 0):
            raise GenrobustError("PGD needs 0 < pgd_eps ≤ 1, pgd_steps ≥ 1 and pgd_step_size > 0")
        if self.method == "distill" and self.temperature <= 0:
            raise GenrobustError("distillation needs a temperature > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def command(self, out: str | os.PathLike[str]) -> str:
        """The CLI command that trains exactly this recipe."""
        args = ["genrobust", "train", "classifier", "--dataset", self.dataset, "--arch", self.arch]
        args += ["--data", self.data, "--method", self.method, "--epochs", str(self.epochs)]
        args += ["--batch-size", str(self.batch_size), "--lr", str(self.lr), "--seed", str(self.seed)]
        if self.lr_schedule != "constant":
            args += ["--lr-schedule", self.lr_schedule]
        if self.method == "pgd":
            args += ["--pgd-eps", str(self.pgd_eps), "--pgd-steps", str(self.pgd_steps)]
            args += ["--pgd-step-size", str(self.pgd_step_size)]
        if self.method == "distill":
            args += ["--temperature", str(self.temperature)]
        return shlex.join([*args, "--out", str(out)])


@dataclass
class TrainResult:
    model: ConvClassifier
    test_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    path: Path | None = None


def pgd_linf(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Madry et al.'s L∞ PGD in image space with a random start; images stay in [0, 1]."""
    noise = torch.rand(x.shape, generator=generator).to(x.device)
    x_adv = (x + (noise * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def _fit(
    model: ConvClassifier,
    recipe: ClassifierRecipe,
    x_u8: torch.Tensor,
    y: torch.Tensor,
    *,
    device: torch.device,
    ckpt: Path,
    stage: str,
    show_progress: bool,
    soft_targets: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> list[dict[str, float]]:
    """Train in place for recipe.epochs, resuming from ``ckpt`` if it holds this stage of this recipe.

    A fractional last epoch trains on the first batches of that epoch's shuffled order, so ``epochs=0.25``
    on a 4× augmented set sees as many images as one epoch of the standard set.
    """
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    history: list[dict[str, float]] = []
    start = 0
    if ckpt.is_file():
        state = load_checkpoint(ckpt, {"model": model}, {"opt": opt})
        if state.get("recipe") != recipe.to_dict() or state.get("stage") != stage:
            raise GenrobustError(f"{ckpt} belongs to another recipe or stage; use another --out or delete it")
        start, history = int(state["epoch"]), list(state["history"])
    n = x_u8.shape[0]
    steps_per_epoch = -(-n // recipe.batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    n_epochs = -(-total_steps // steps_per_epoch)
    for epoch in range(start, n_epochs):
        steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(sub_seed(recipe.seed, epoch, 1)))
        torch.manual_seed(sub_seed(recipe.seed, epoch, 2))  # dropout masks
        pgd_gen = torch.Generator().manual_seed(sub_seed(recipe.seed, epoch, 3))
        total, seen, t0 = 0.0, 0, time.perf_counter()
        bar = progress(steps, f"{stage} epoch {epoch + 1}/{n_epochs}", show_progress)
        for i in range(0, steps * recipe.batch_size, recipe.batch_size):
            if recipe.lr_schedule == "cosine":
                t = (epoch * steps_per_epoch + i // recipe.batch_size) / total_steps
                for group in opt.param_groups:
                    group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * t))
            idx = order[i : i + recipe.batch_size]
            xb = x_u8[idx].to(device=device, dtype=torch.float32).div_(255.0)
            yb = y[idx].to(device)
            if recipe.method == "pgd" and stage == "main":
                xb = pgd_linf(
                    model,
                    xb,
                    yb,
                    eps=recipe.pgd_eps,
                    steps=recipe.pgd_steps,
                    step_size=recipe.pgd_step_size,
                    generator=pgd_gen,
                )
            logits = model(xb) / temperature
            if soft_targets is not None:
                loss = -(soft_targets[idx].to(device) * F.log_softmax(logits, 1)).sum(1).mean()
            else:
                loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        bar.close()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": total / seen,
                "images": seen,
                "seconds": time.perf_counter() - t0,
                "images_per_second": seen / (time.perf_counter() - t0),
                # the weights depend on it: float sums split by thread count differ (1 vs 2 threads, 0.05 of an
                # epoch of `small`: weights up to 0.035 apart), so a retrained row is comparable only at the same count
                "torch_threads": torch.get_num_threads(),
            }
        )
        save_checkpoint(
            ckpt,
            {"model": model},
            {"opt": opt},
            {"recipe": recipe.to_dict(), "stage": stage, "epoch": epoch + 1, "history": history},
        )
    return history


def train_classifier(
    recipe: ClassifierRecipe,
    *,
    out: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    half: bool = False,
    train_data: Dataset | None = None,
    test_data: Dataset | None = None,
) -> TrainResult:
    """Train a classifier by ``recipe``; with ``out``, checkpoint into that folder and write
    ``out/classifier.safetensors`` with the recipe, command and test accuracy in its metadata.

    ``train_data`` / ``test_data`` replace the recipe's datasets (for your own data, or quick experiments).
    """
    dev = resolve_device(device)
    outdir = Path(out) if out is not None else None
    # Without ``out`` the checkpoints live in a private temporary folder removed at the end.
    scratch = tempfile.TemporaryDirectory(prefix="genrobust-train-") if outdir is None else None
    work = outdir if outdir is not None else Path(scratch.name)  # type: ignore[union-attr]
    train = train_data or training_data(recipe.dataset, recipe.data, seed=recipe.seed, data_dir=data_dir)
    test = test_data or load_dataset(recipe.dataset, "test", data_dir=data_dir)
    x_u8 = torch.from_numpy(train.images).unsqueeze(1)
    y = torch.from_numpy(train.labels)
    torch.manual_seed(sub_seed(recipe.seed, 0, 0))  # initial weights
    model = build_classifier(recipe.arch).to(dev)
    history: list[dict[str, float]] = []
    soft, temperature = None, 1.0
    if recipe.method == "distill":
        # Teacher at temperature T on hard labels; the student then learns the teacher's soft labels at T.
        torch.manual_seed(sub_seed(recipe.seed, 0, 5))
        teacher = build_classifier(recipe.arch).to(dev)
        temperature = recipe.temperature
        history += _fit(
            teacher, recipe, x_u8, y, device=dev, ckpt=work / "teacher.ckpt.safetensors", stage="teacher",
            show_progress=show_progress, temperature=temperature,
        )  # fmt: skip
        teacher.eval()
        with torch.no_grad():
            batches = (x_u8[i : i + 1000].to(dev, torch.float32) / 255.0 for i in range(0, x_u8.shape[0], 1000))
            soft = torch.cat([F.softmax(teacher(xb) / temperature, 1).cpu() for xb in batches])
    history += _fit(
        model, recipe, x_u8, y, device=dev, ckpt=work / "main.ckpt.safetensors", stage="main",
        show_progress=show_progress, soft_targets=soft, temperature=temperature,
    )  # fmt: skip
    x_test, y_test = test.tensors()
    acc = accuracy(model, x_test, y_test)
    result = TrainResult(model.eval(), acc, history)
    if outdir is not None:
        half_keys: list[str] = fp16_safe_tensors(model, x_test) if half else []
        info = {
            "dataset": recipe.dataset,
            "input_range": [0.0, 1.0],
            "input_shape": [1, 28, 28],
            "recipe": recipe.to_dict(),
            "command": recipe.command(outdir),
            "test_accuracy": acc,
            "test_set": f"{recipe.dataset} test ({len(test)} images)",
            "history": history,
            "class_names": list(test.class_names),
        }
        result.path = outdir / "classifier.safetensors"
        save_model(result.path, model, info=info, half=half_keys)
    if scratch is not None:
        scratch.cleanup()
    return result


def fp16_safe_tensors(model: torch.nn.Module, x_test: torch.Tensor) -> list[str]:
    """The tensors that can be stored in float16 without changing any test-set prediction.

    Greedy, largest tensor first: a tensor joins the float16 set if, together with those already in it,
    rounding it to float16 leaves every prediction on ``x_test`` unchanged.
    """
    ref = predictions(model, x_test)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    chosen: list[str] = []
    for key in sorted((k for k, v in state.items() if v.is_floating_point()), key=lambda k: -state[k].numel()):
        trial = set(chosen) | {key}
        model.load_state_dict({k: (v.half().float() if k in trial else v) for k, v in state.items()})
        if torch.equal(predictions(model, x_test), ref):
            chosen.append(key)
    model.load_state_dict(state)
    return chosen
