"""Every Triton launch of both memory ops compiles for an H100 (sm_90) and fits its shared memory, checked on the
CPU (the interpreter alone accepts code that the compiler rejects). Runs tests/ops/sm90_compile.py in a subprocess,
because this process's kernels are interpreted ones (TRITON_INTERPRET=1, set in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("sm90_compile.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests compile and run these kernels for real")
def test_every_launch_compiles_for_sm90() -> None:
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900)
    lines = proc.stdout.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert proc.returncode == 0 and not failures, "\n".join(failures or lines[-20:] or [proc.stderr[-3000:]])
    compiled = {line.split()[1] for line in lines if line.startswith("ok ")}
    for kernel in ("gram_kernel", "fwd_parallel_kernel", "fwd_recurrence_kernel", "readout_kernel",
                   "bwd_recurrence_kernel", "gate_logits_kernel", "bwd_slice_kernel", "outer_kernel",
                   "dkdv_kernel", "step_kernel", "_prep_kernel", "_state_fwd_kernel",
                   "_state_bwd_kernel", "_chunk_bwd_kernel", "_seg_fwd_kernel", "_seg_bwd_kernel",
                   "_seg_combine_kernel", "_output_kernel", "_bwd_pre_kernel", "_state_bwd_pre_kernel"):  # fmt: skip
        assert kernel in compiled, f"{kernel} was never launched by the cases of {SCRIPT.name}"
