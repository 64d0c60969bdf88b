"""Command line shared by the token-rule probes (``chain_probe.py``, ``step_probe.py``): ``--shapes`` and
``--smoke`` (a CPU check of the probe's kernels under the Triton interpreter), with the same refusals in both."""

from __future__ import annotations

import argparse
import os

import torch


def probe_args(doc: str, shapes: list[str], script: str, argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments; SystemExit for --smoke outside the interpreter and for a timing run without CUDA."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=shapes)
    parser.add_argument("--smoke", action="store_true", help="CPU check against torch loops (TRITON_INTERPRET=1)")
    args = parser.parse_args(argv)
    if args.smoke and os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("--smoke runs under TRITON_INTERPRET=1")
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit(f"{script} needs a CUDA GPU (or --smoke under the interpreter)")
    return args
