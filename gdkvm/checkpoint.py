"""Rebuild a GDKVM network from a file alone: a Lightning checkpoint or a slim gdkvm weights file.

A network is described by a *spec*, ``{"class_path": "gdkvm.model.GDKVM", "init_args": {...}}`` (the form
LightningCLI writes). `GDKVMSystem` saves the spec of its ``net`` in the checkpoint's hyper-parameters, so
``load_model(ckpt)`` needs no config file. ``gdkvm/weights/default.*`` (issue 8) uses the slim form written by
`save_weights`: ``{"format": "gdkvm-weights/1", "model": spec, "state_dict": {...}, "info": {...}}``.
Only classes under the ``gdkvm.`` package are instantiated, so a file cannot make us import arbitrary code.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gdkvm.errors import GdkvmError, InputError

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "gdkvm-weights/1"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_PRIMITIVES = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    """True for JSON-like values (what a spec may hold)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PRIMITIVES)


def _listify(value: Any) -> Any:
    """Tuples become lists (as in YAML / LightningCLI specs), recursively."""
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


def model_spec(net: nn.Module) -> dict | None:
    """The spec that rebuilds ``net``'s architecture, or None when it cannot be recovered.

    A network may expose its constructor arguments as a dict attribute ``init_kwargs`` or ``config`` (GDKVM does);
    otherwise each constructor
    parameter is looked up as an attribute of the same name. Values must be plain (numbers, strings, lists, dicts).

    Args:
        net: the network.

    Returns:
        ``{"class_path": ..., "init_args": {...}}`` or None.
    """
    cls = type(net)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    for attr in ("init_kwargs", "config"):
        given = getattr(net, attr, None)
        if isinstance(given, dict) and _plain(given):
            return {"class_path": class_path, "init_args": _listify(given)}
    init_args: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(net, name) or not _plain(getattr(net, name)):
            logger.debug("cannot recover constructor argument %r of %s", name, class_path)
            return None
        init_args[name] = getattr(net, name)
    return {"class_path": class_path, "init_args": _listify(init_args)}


def build_from_spec(spec: Any, source: str | Path | None = None) -> nn.Module:
    """Instantiate a network from its spec (only classes inside the ``gdkvm`` package).

    Args:
        spec: ``{"class_path": str, "init_args": dict}``.
        source: file the spec came from (for error messages).

    Returns:
        the freshly initialised network.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
        raise InputError("has no model description (class_path / init_args) to rebuild the network from", source)
    class_path, init_args = spec["class_path"], dict(spec.get("init_args") or {})
    if not class_path.startswith("gdkvm."):
        raise InputError(f"refusing to build {class_path!r}: only gdkvm classes can be loaded", source)
    module_name, _, attr = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"model class {class_path!r} is not available in this gdkvm ({err})", source) from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InputError(f"{class_path!r} is not a network class", source)
    try:
        return cls(**init_args)
    except TypeError as err:
        raise InputError(f"model arguments do not fit {class_path} ({err})", source) from err


def _read(path: Path) -> tuple[dict, dict, int | None]:
    """(spec, state_dict, input size or None) of a Lightning checkpoint or a gdkvm weights file."""
    if not path.is_file():
        raise InputError("no such checkpoint file", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint we can read"
        raise InputError(f"not a readable PyTorch checkpoint ({type(err).__name__}: {err})", path) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise InputError("not a Lightning checkpoint or gdkvm weights file (no state_dict)", path)
    if payload.get("format") == WEIGHTS_FORMAT:
        size = (payload.get("info") or {}).get("input_size")
        return payload.get("model"), payload["state_dict"], size
    hparams = payload.get("hyper_parameters") or {}
    prefix = "net."
    state = {k[len(prefix) :]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise InputError("checkpoint holds no 'net.*' weights (not written by GDKVMSystem?)", path)
    size = (payload.get("datamodule_hyper_parameters") or {}).get("size")
    return hparams.get("net"), state, size


def resolve_name(name: str) -> Path:
    """Path of a named bundled model (``"default"`` -> ``gdkvm/weights/default.*``)."""
    candidates = sorted(WEIGHTS_DIR.glob(f"{name}.*")) if WEIGHTS_DIR.is_dir() else []
    candidates = [p for p in candidates if p.suffix in (".pt", ".pth", ".ckpt")]
    if not candidates:
        raise GdkvmError(
            f"no bundled model named {name!r} in this install ({WEIGHTS_DIR}/{name}.pt is missing); "
            "pass the path of a checkpoint instead"
        )
    return candidates[0]


def load_model(path_or_name: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild a trained GDKVM network from a checkpoint (or a bundled name) alone, in eval mode, fp32.

    Args:
        path_or_name: a Lightning ``.ckpt`` written by ``gdkvm fit``, a gdkvm weights file, or a bundled model name
            (``"default"``; see `resolve_name`).
        device: where to put the network (default CPU).

    Returns:
        the network (`gdkvm.model.GDKVM`) with its trained weights, ``eval()``-ed.

    Raises:
        InputError: missing or unreadable file, no model description in it, or weights that do not fit.
        GdkvmError: an unknown bundled name.
    """
    text = str(path_or_name)
    is_name = isinstance(path_or_name, str) and "/" not in text and "\\" not in text and not Path(text).suffix
    path = resolve_name(text) if is_name and not Path(text).exists() else Path(path_or_name)
    spec, state, size = _read(path)
    net = build_from_spec(spec, path)
    state = {k: (v.float() if torch.is_floating_point(v) else v) for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(f"weights do not fit the network described in the file: {err}", path) from err
    net.input_size = int(size) if size else None  # square frame size it was trained at (used by gdkvm segment)
    logger.info("loaded %s from %s", spec["class_path"], path)
    return net.float().eval().to(device or "cpu")


def save_weights(
    net: nn.Module, out: str | Path, half: bool = False, info: dict | None = None, spec: dict | None = None
) -> Path:
    """Write a slim weights file that `load_model` reads (no optimizer state, optionally fp16 storage).

    Args:
        net: the network.
        out: file to write (an existing file is never overwritten).
        half: store floating-point tensors as fp16 (`load_model` casts back to fp32).
        info: free-form plain metadata (data, metrics, ...).
        spec: the network's spec; default `model_spec(net)`.

    Returns:
        the path written.
    """
    out = Path(out)
    if out.exists():
        raise InputError("exists already; refusing to overwrite it", out)
    spec = spec or model_spec(net)
    if spec is None:
        raise GdkvmError(f"cannot describe {type(net).__name__}'s constructor arguments; pass spec=")
    state = {k: (v.half() if half and torch.is_floating_point(v) else v).cpu() for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": WEIGHTS_FORMAT, "model": spec, "state_dict": state, "info": dict(info or {})}, out)
    return out
