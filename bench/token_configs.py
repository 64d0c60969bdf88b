"""Launch-configuration sweep of the token-rule kernels, each candidate in its own process (an illegal memory access
poisons the CUDA context, so a crashing candidate is recorded and the sweep goes on).

    python3 bench/token_configs.py --json OUT.json

Every candidate changes one kernel's configuration (``GDKVM_TOKEN_CONFIG``) from the heuristic; its child times each
launch alone (as ``bench/ops_token.py``'s launch table) at the sweep shapes and checks o and dq/dk/dv/dg/dbeta of the
whole op against the heuristic configuration's, in the same process. Prints one line per candidate and the fastest
correct configuration per kernel and shape.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"B4T2560H8K64V64": (4, 2560, 8, 64, 64), "B4T10240H8K64V64": (4, 10240, 8, 64, 64),
          "B4T2560H8K128V128": (4, 2560, 8, 128, 128), "B8T4096H16K128V128": (8, 4096, 16, 128, 128)}  # fmt: skip
PASSES = {"state": ("state", "state_bwd")}
CANDIDATES = [{}] + [  # (kernel, BV, num_warps, num_stages); "state" sets both sequential passes
    {name: {"BV": bv, "num_warps": w, "num_stages": s} for name in PASSES.get(kernel, (kernel,))}
    for kernel, bv, w, s in (
        ("chunk_bwd", 32, 4, 2), ("chunk_bwd", 64, 8, 2), ("chunk_bwd", 16, 4, 2), ("chunk_bwd", 32, 8, 2),
        # fewer registers (ptxas on sm_90 reports every token kernel at 255 registers with spills): unpipelined
        # prep, 8-warp state passes (TF32 products of 32 columns stay 16 wide per warpgroup), unpipelined chunk bwd
        ("prep", 64, 4, 1), ("state", 32, 8, 1), ("state", 32, 8, 2), ("state_bwd", 32, 8, 1),
        ("state_bwd", 16, 4, 2), ("chunk_bwd", 32, 8, 1), ("chunk_bwd", 16, 8, 1),
        ("prep", 64, 4, 3), ("prep", 32, 4, 2), ("prep", 32, 8, 2), ("prep", 64, 4, 2), ("prep", 32, 4, 3),
        ("state", 32, 4, 2), ("state", 64, 4, 2), ("state", 16, 4, 1), ("state", 32, 4, 1),
    )
]  # fmt: skip
LAUNCH_OF = {
    "prep": ["k_prep_ms"],
    "state": ["k_state_fwd_ms"],
    "state_bwd": ["k_state_bwd_ms"],
    "chunk_bwd": ["k_chunk_bwd_ms"],
}


def child(candidate: str, shapes: list[str]) -> None:
    """Time and check one candidate; prints one JSON line."""
    import torch

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from ops_token import make_inputs, rel_rms, time_launches

    from gdkvm.ops import chunk_gated_delta

    def run(inputs: dict) -> list[torch.Tensor]:
        leaves = {n: x.detach().requires_grad_(True) for n, x in inputs.items()}
        o, _ = chunk_gated_delta(**leaves)
        o.backward(torch.ones_like(o))
        return [o.detach()] + [leaves[n].grad for n in ("q", "k", "v", "g", "beta")]

    out: dict[str, object] = {"candidate": json.loads(candidate)}
    for name in shapes:
        inputs = make_inputs(SHAPES[name])
        os.environ.pop("GDKVM_TOKEN_CONFIG", None)
        want = run(inputs)
        os.environ["GDKVM_TOKEN_CONFIG"] = candidate
        got = run(inputs)
        err = max(rel_rms(w.float(), g.float()) for w, g in zip(want, got))
        out[name] = {"max_rel_diff": err, **time_launches(inputs, 5, 20)}
        torch.cuda.synchronize()
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--timeout", type=int, default=90, help="seconds per candidate")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.shapes)
    results = []
    for cand in CANDIDATES:
        text = json.dumps(cand)
        cmd = [sys.executable, __file__, "--child", text, "--shapes", *args.shapes]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            row = json.loads(lines[-1][7:]) if lines else {"candidate": cand, "error": proc.stderr[-300:]}
        except subprocess.TimeoutExpired:
            row = {"candidate": cand, "error": "timeout"}
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1))
    summarize(results, args.shapes)


def summarize(results: list[dict], shapes: list[str]) -> None:
    """Fastest correct candidate per kernel and shape (max relative difference to the heuristic <= 1e-2)."""
    for kernel, launches in LAUNCH_OF.items():
        for name in shapes:
            rows = [r for r in results if name in r and (not r["candidate"] or kernel in r["candidate"])]
            rows = [r for r in rows if r[name]["max_rel_diff"] <= 1e-2]
            if rows:
                best = min(rows, key=lambda r: sum(r[name][k] for k in launches))
                ms = sum(best[name][k] for k in launches)
                print(f"best {kernel:9s} {name:20s} {json.dumps(best['candidate'])} {ms:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
