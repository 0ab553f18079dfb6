"""Resumable training state in safetensors: model weights, optimiser moments, counters. Never pickle.

A checkpoint holds every tensor under a prefixed key (``model/<name>/<param>``, ``optim/<name>/<i>/<k>``) and
everything else (counters, optimiser hyper-parameters, the recipe) as JSON in the safetensors metadata. It is
written to a temporary file and renamed, so a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import GenrobustError


def save_checkpoint(
    path: str | os.PathLike[str],
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, Any] = {}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"model/{name}/{k}"] = v.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        groups[name] = sd["param_groups"]
        for idx, st in sd["state"].items():
            for k, v in st.items():
                t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
                tensors[f"optim/{name}/{idx}/{k}"] = t.detach().cpu().contiguous()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(groups)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_checkpoint(
    path: str | os.PathLike[str],
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    """Restore modules and optimisers in place; return the saved counters."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GenrobustError(f"{path}: not a readable checkpoint ({exc}); delete it to start afresh") from None
    try:
        state = json.loads(meta["state"])
        groups = json.loads(meta["param_groups"])
    except (KeyError, ValueError):
        raise GenrobustError(f"{path}: checkpoint metadata is missing or corrupt") from None
    for name, module in modules.items():
        prefix = f"model/{name}/"
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(sd)
        except RuntimeError as exc:
            raise GenrobustError(f"{path}: checkpoint does not fit module {name!r}: {exc}") from None
    for name, opt in optimizers.items():
        prefix = f"optim/{name}/"
        st: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix) :].split("/", 1)
                st.setdefault(int(idx), {})[key] = v
        opt.load_state_dict({"state": st, "param_groups": groups[name]})
    return state
