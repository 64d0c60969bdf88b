"""The `gdkvm` console script: one dispatcher, one module per sub-command.

Each sub-command lives in its own module and exposes ``main(argv: list[str]) -> int``; this file only maps names to
those functions, so importing the CLI stays cheap (torch, Lightning and Gradio load only for the command that
needs them).
"""

from __future__ import annotations

import importlib
import logging
import sys

from gdkvm.errors import GdkvmError

# name -> ("module", "function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("gdkvm.cli.synth", "main", "write a synthetic CAMUS- or EchoNet-format data set"),
    "fit": ("gdkvm.cli.train", "main_fit", "train a model (LightningCLI)"),
    "validate": ("gdkvm.cli.train", "main_validate", "validate a checkpoint (LightningCLI)"),
    "test": ("gdkvm.cli.train", "main_test", "test a checkpoint, write metrics.json and per_case.csv (LightningCLI)"),
    "predict": ("gdkvm.cli.train", "main_predict", "predict with a checkpoint (LightningCLI)"),
    "segment": ("gdkvm.cli.segment", "main", "segment clips: masks (.nii.gz), overlay video (mp4), areas.csv"),
    "ef": ("gdkvm.cli.ef", "main_ef", "ejection fraction of one clip (or an A4C + A2C pair), beat by beat"),
    "ef-eval": ("gdkvm.cli.ef", "main_ef_eval", "EF against a data set's reference: MAE, r, Bland-Altman"),
    "demo": ("gdkvm.cli.demo", "main", "start the browser demo (Gradio) on 127.0.0.1"),
    "export": ("gdkvm.cli.export", "main", "export the streaming model to ONNX or TorchScript"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: gdkvm COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`gdkvm COMMAND --help` shows the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; errors that gdkvm raises on purpose print as one line and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from gdkvm import __version__

        print(f"gdkvm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gdkvm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except GdkvmError as err:
        print(f"gdkvm {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
