"""`gdkvm demo [--ckpt CKPT ...] [--host 127.0.0.1] [--port 7860]`: serve the browser demo (app/app.py).

The page offers only the checkpoints named here (and the bundled ones), so visitors cannot make the server open other
files. It binds 127.0.0.1 unless ``--host`` says otherwise (``--host 0.0.0.0`` serves the network: do that only on a
trusted network, the demo has no login)."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from gdkvm.errors import GdkvmError


def load_app_module() -> ModuleType:
    """Import ``app/app.py`` from the source tree this gdkvm was installed from (or the current folder)."""
    candidates = [Path(__file__).resolve().parents[2] / "app" / "app.py", Path.cwd() / "app" / "app.py"]
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location("gdkvm_app", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise GdkvmError("the demo page app/app.py was not found; run gdkvm demo from a clone of the repository")


def main(argv: list[str]) -> int:
    """Parse the arguments and serve until interrupted."""
    p = argparse.ArgumentParser(prog="gdkvm demo", description=__doc__)
    p.add_argument(
        "--ckpt",
        action="append",
        default=None,
        help="checkpoint file, or 'default' for the bundled model; repeat to offer several (the first is preselected)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--max-file-size", default="300mb", help="largest upload accepted (default 300mb)")
    p.add_argument("--concurrency", type=int, default=2, help="requests processed at once (the rest queue)")
    args = p.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = load_app_module()
    print(f"gdkvm demo on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    app.launch(args.ckpt or ["default"], args.host, args.port, args.device, args.max_file_size, args.concurrency)
    return 0
