"""Benchmarks of the memory ops on one CUDA device: ``python3 bench/ops.py [--rule frame|token|all] [OPTIONS]``.

A thin runner: the frame rule lives in ``bench/ops_frame.py``, the token rule in ``bench/ops_token.py`` (when present);
both expose ``run(args) -> list[dict]`` and ``main(argv)``. Options after ``--rule`` go to each rule's own parser.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = {"frame": HERE / "ops_frame.py", "token": HERE / "ops_token.py"}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_ops_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", default="all", choices=["all", *RULES])
    args, rest = parser.parse_known_args(argv)
    names = list(RULES) if args.rule == "all" else [args.rule]
    rows = []
    for name in names:
        if not RULES[name].exists():
            print(f"{name} rule: {RULES[name].name} not present, skipped", flush=True)
            continue
        out = _load(name, RULES[name]).main(rest)
        rows += [{"rule": name, **row} for row in (out or [])]
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
