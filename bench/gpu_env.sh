#!/usr/bin/env bash
# Source this on the GPU machine (repo root as cwd): installs, from wheels carried in .whl/, only the Python packages
# its image lacks, into /tmp/site, and puts that and the repo on PYTHONPATH. Prints what it installed. Defines
# gpu_report (card and versions, for the header of every result file).
missing=()
need() {  # need MODULE WHEEL_GLOB...
  local mod=$1; shift
  python3 -c "import $mod" 2>/dev/null && return
  for g in "$@"; do compgen -G ".whl/$g" >/dev/null && missing+=(.whl/$g); done
}
need lightning 'lightning-*.whl'
need lightning_utilities 'lightning_utilities-*.whl'
need torchmetrics 'torchmetrics-*.whl'
need jsonargparse 'jsonargparse-*.whl'
need docstring_parser 'docstring_parser-*.whl'
need typeshed_client 'typeshed_client-*.whl' 'importlib_resources-*.whl'
need monai 'monai-*.whl'
need SimpleITK 'simpleitk-*.whl'
need albumentations 'albumentations-*.whl' 'albucore-*.whl' 'stringzilla-*.whl' 'simsimd-*.whl'
need pydantic 'pydantic-*.whl' 'pydantic_core-*.whl' 'annotated_types-*.whl' 'typing_inspection-*.whl'
need yaml 'pyyaml-*.whl'
need tqdm 'tqdm-*.whl'
need einops 'einops-*.whl'
need fla 'fla_core-*.whl'
if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2068
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site ${missing[@]} \
    && echo "installed: ${missing[*]}"
fi
export PYTHONPATH=$PWD:/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1
# compiled kernels, never the interpreter; fla-core (the token-rule peer) without its backend dispatch
export TRITON_INTERPRET=0 FLA_DISABLE_BACKEND_DISPATCH=1
# Triton's autotuning results (fla-core's spend about 300 s per bench call) are kept on disk and carried between
# calls: save_autotune OUTDIR packs them into OUTDIR/autotune.tgz; copied here into .tcache/ (git-ignored) and named
# in the call's carry, they are unpacked below, so fla-core's kernels compile only the configurations chosen before.
export TRITON_CACHE_AUTOTUNING=1 TRITON_CACHE_DIR=/tmp/tcache
mkdir -p /tmp/tcache
[ -f .tcache/autotune.tgz ] && tar -xzf .tcache/autotune.tgz -C /tmp/tcache && echo "autotune cache restored"
save_autotune() {  # save_autotune OUTDIR
  (cd /tmp/tcache && find . -name '*.autotune.json' -print0 | tar -czf "$1/autotune.tgz" --null -T -)
}

gpu_report() {  # the card(s), driver and versions that every recorded GPU figure names
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, triton, lightning; print('torch', torch.__version__, 'triton', triton.__version__, 'lightning', lightning.__version__)"
  git log -1 --format='commit %h %s' 2>/dev/null
}
