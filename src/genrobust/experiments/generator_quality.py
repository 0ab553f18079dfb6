"""Generator quality (the paper's assumptions 1 and 2: variety and realism), measured per class.

In the feature space of a classifier trained on the dataset (the input of its last linear layer), per class c:

* **precision** (realism): the share of generated images that fall inside the real images' manifold, the union
  of balls around each real feature reaching its k-th nearest real neighbour (Kynkäänniemi et al., 2019);
* **recall** (variety): the share of real images inside the generated images' manifold;
* **Fréchet distance** between Gaussians fitted to the two feature sets (the FID recipe, with this classifier's
  features instead of Inception's).

The reference row puts the real test set in the generator's place: the values a perfect generator would get at
these sample sizes (precision and recall fall with fewer samples, so every row uses the same n per class).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import GenrobustError
from ..models.coverage import Coverage
from ..models.generators import GeneratorFamily, module_device
from ..runtime import eval_mode, sub_seed


def last_linear(classifier: nn.Module) -> nn.Linear:
    layers = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise GenrobustError("the classifier has no nn.Linear layer whose input could serve as features")
    return layers[-1]


@torch.no_grad()
def features(classifier: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The input of the classifier's last linear layer for each image (float64, on the CPU)."""
    layer, out = last_linear(classifier), []
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda m, inp, o: captured.append(inp[0].detach()))
    try:
        with eval_mode(classifier):  # the caller's model keeps its mode
            dev = module_device(classifier)
            for i in range(0, len(images), batch_size):
                captured.clear()
                classifier(images[i : i + batch_size].to(dev))
                out.append(captured[-1].flatten(1).double().cpu())
    finally:
        hook.remove()
    return torch.cat(out)


def _kth_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(math.inf)
    return d.kthvalue(k, dim=1).values


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of ``fake`` against ``real`` features."""
    if len(real) <= k or len(fake) <= k:
        raise GenrobustError(f"precision and recall need more than k = {k} samples on each side")
    r_real, r_fake = _kth_radii(real, k), _kth_radii(fake, k)
    d = torch.cdist(fake, real)  # (fake, real)
    precision = float((d <= r_real[None, :]).any(1).double().mean())
    recall = float((r_fake[None, :] >= d.T).any(1).double().mean())
    return precision, recall


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½) between Gaussians fitted to two feature sets."""
    a, b = a.numpy(), b.numpy()
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _sqrtm(sa @ sb)
    if not np.isfinite(root).all():  # a singular product: regularise as the FID reference code does
        eye = np.eye(len(sa)) * 1e-6
        root = _sqrtm((sa + eye) @ (sb + eye))
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * np.trace(root.real))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on nearly singular products; the result is checked instead
        out = linalg.sqrtm(m)
    return out[0] if isinstance(out, tuple) else out


@dataclass
class QualityRow:
    name: str  # a generator family, or "real test set"
    precision: list[float]  # per class
    recall: list[float]
    frechet: list[float]
    frechet_all: float  # over all classes pooled
    #: per class: the share of the pixels where the class's real images are dark (mean < 0.05) that are bright
    #: (> 0.2) in these images: speckle around the stroke, which no real digit has (None in older records)
    stray: list[float] | None = None
    #: per class: the classifier's accuracy on these images (label c for class c's)
    accuracy: list[float] | None = None

    @property
    def mean(self) -> dict[str, float]:
        out = {"precision": float(np.mean(self.precision)), "recall": float(np.mean(self.recall)),
               "frechet": float(np.mean(self.frechet))}  # fmt: skip
        for name in ("stray", "accuracy"):
            if getattr(self, name) is not None:
                out[name] = float(np.mean(getattr(self, name)))
        return out


@dataclass
class QualityResult:
    dataset: str
    classifier: str
    n: int
    k: int
    seed: int
    class_names: list[str]
    rows: list[QualityRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for row, r in zip(d["rows"], self.rows, strict=True):
            row["mean"] = r.mean
        return d

    def table(self) -> str:
        """Markdown: per row the mean over classes and the worst class of each measure."""
        lines = ["| generated by | precision: mean · worst class | recall: mean · worst class | Fréchet distance: "
                 "mean over classes · worst class · all classes pooled | stray pixels: mean · worst class | "
                 "classifier's accuracy: mean · worst class |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in self.rows:
            worst = lambda v, f: (self.class_names[int(f(v))], v[int(f(v))])  # noqa: E731
            p, rc, fd = worst(r.precision, np.argmin), worst(r.recall, np.argmin), worst(r.frechet, np.argmax)
            looks = []
            for values, f, fmt in ((r.stray, np.argmax, ".2%"), (r.accuracy, np.argmin, ".1%")):
                w = worst(values, f) if values is not None else None
                looks.append(f"{np.mean(values):{fmt}} · {w[0]}: {w[1]:{fmt}}" if w else "–")
            lines.append(f"| {r.name} | {r.mean['precision']:.2f} · {p[0]}: {p[1]:.2f} | {r.mean['recall']:.2f} · "
                         f"{rc[0]}: {rc[1]:.2f} | {r.mean['frechet']:.1f} · {fd[0]}: {fd[1]:.1f} · "
                         f"{r.frechet_all:.1f} | {looks[0]} | {looks[1]} |")  # fmt: skip
        return "\n".join(lines)

    def class_table(self) -> str:
        """Markdown: precision / recall / Fréchet distance per class and row."""
        head = "| class | " + " | ".join(r.name for r in self.rows) + " |"
        lines = [head, "|---|" + "---|" * len(self.rows)]
        for c, name in enumerate(self.class_names):
            cells = [f"{r.precision[c]:.2f} / {r.recall[c]:.2f} / {r.frechet[c]:.1f}" for r in self.rows]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


#: A pixel is background where the class's real images average below DARK, and stray where an image is above
#: BRIGHT there.
DARK, BRIGHT = 0.05, 0.2


def stray_share(images: torch.Tensor, dark: torch.Tensor) -> float:
    """The share of the ``dark`` pixels (the class's background) that are bright in ``images`` (N, *dark.shape)."""
    if not bool(dark.any()):
        return 0.0
    return float((images.detach().cpu() > BRIGHT)[:, dark].double().mean())


@torch.no_grad()
def label_share(classifier: nn.Module, images: torch.Tensor, cls: int, batch_size: int = 500) -> float:
    """The share of ``images`` the classifier labels ``cls``."""
    dev = module_device(classifier)
    with eval_mode(classifier):
        hits = sum(int((classifier(images[i : i + batch_size].to(dev)).argmax(1) == cls).sum())
                   for i in range(0, len(images), batch_size))  # fmt: skip
    return hits / max(1, len(images))


def _per_class(images: torch.Tensor, labels: torch.Tensor, c: int, n: int, seed: int, tag: int) -> torch.Tensor:
    idx = torch.nonzero(labels == c).flatten()
    g = torch.Generator().manual_seed(sub_seed(seed, c, tag))
    return images[idx[torch.randperm(len(idx), generator=g)[:n]]]


@torch.no_grad()
def assess_generators(
    classifier: nn.Module,
    families: dict[str, GeneratorFamily],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    n: int = 1000,
    k: int = 3,
    seed: int = 0,
    dataset: str = "",
    classifier_name: str = "",
    class_names: Sequence[str] | None = None,
) -> QualityResult:
    """Precision, recall and Fréchet distance per class of each family's images against n training images per
    class (and of n test images, the reference row, when ``test`` is given)."""
    if not isinstance(n, int) or n <= k:
        raise GenrobustError(f"n must be an integer larger than k = {k}, got {n!r}")
    x_train, y_train = train
    num = int(y_train.max()) + 1
    names = list(class_names) if class_names is not None else [str(c) for c in range(num)]
    real_images = [_per_class(x_train, y_train, c, n, seed, 1) for c in range(num)]
    real = [features(classifier, imgs) for imgs in real_images]
    dark = [imgs.mean(0) < DARK for imgs in real_images]  # where the class's real images are background
    res = QualityResult(dataset, classifier_name, n, k, seed, names)
    sources: list[tuple[str, list[torch.Tensor]]] = []
    looks: dict[str, tuple[list[float], list[float]]] = {}  # name → (stray share, accuracy) per class
    if test is not None:
        images = [_per_class(*test, c, n, seed, 2) for c in range(num)]
        sources.append(("real test set", [features(classifier, im) for im in images]))
        looks["real test set"] = ([stray_share(im, dark[c]) for c, im in enumerate(images)],
                                  [label_share(classifier, im, c) for c, im in enumerate(images)])  # fmt: skip
    for fname, fam in families.items():
        if len(fam) != num:
            raise GenrobustError(f"{fname} has {len(fam)} classes, the dataset {num}")
        feats, stray, acc = [], [], []
        for c in range(num):
            z = fam.sample_latents(n, generator=torch.Generator().manual_seed(sub_seed(seed, c, 3)))
            g = fam[c]
            with eval_mode(g):
                images = g(z.to(module_device(g)))
            feats.append(features(classifier, images))
            stray.append(stray_share(fam.display(images).cpu(), dark[c]))
            acc.append(label_share(classifier, images, c))
        sources.append((fname, feats))
        looks[fname] = (stray, acc)
    for name, feats in sources:
        pr = [precision_recall(real[c], feats[c], k) for c in range(num)]
        fd = [frechet_distance(real[c], feats[c]) for c in range(num)]
        res.rows.append(QualityRow(name, [p for p, _ in pr], [r for _, r in pr], fd,
                                   frechet_distance(torch.cat(real), torch.cat(feats)), *looks[name]))  # fmt: skip
    return res


def measure_coverage(
    classifier: nn.Module,
    family: GeneratorFamily,
    dataset: str,
    *,
    n: int = 1000,
    k: int = 3,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    classifier_name: str = "",
    how: str = "--assess",
) -> Coverage:
    """The family's precision and recall per class against ``dataset``'s training images, in the features of
    ``classifier`` (the input of its last linear layer): what ``--assess DATASET`` attaches to a verdict. The
    family's images must have the dataset's shape and the family one generator per class of it."""
    from ..data import load_dataset

    train = load_dataset(dataset, "train", data_dir=data_dir)
    x, y = train.tensors()
    classes = int(y.max()) + 1
    if len(family) != classes:
        raise GenrobustError(f"--assess {dataset}: the generators have {len(family)} classes, {dataset} {classes}")
    g = family[0]
    with torch.no_grad(), eval_mode(g):
        drawn = g(family.sample_latents(1, generator=torch.Generator().manual_seed(0)).to(module_device(g)))
    if tuple(drawn.shape[1:]) != tuple(x.shape[1:]):
        raise GenrobustError(f"--assess {dataset}: the generators draw images of shape {tuple(drawn.shape[1:])}, "
                             f"{dataset}'s are {tuple(x.shape[1:])}")  # fmt: skip
    res = assess_generators(classifier, {"family": family}, (x, y), n=n, k=k, seed=seed, dataset=dataset)
    row = res.rows[0]
    name = classifier_name or type(classifier).__name__
    source = f"{n:,} {dataset} training images and {n:,} generated per class, {name} features, k = {k}: {how}"
    return Coverage(tuple(row.precision), tuple(row.recall), source)
