"""``universeg-jax app``: segment by example in the browser, on this machine.

    universeg-jax app --weights v1            # then open the address it prints

A local web page (Starlette + a plain HTML/JS page, served by uvicorn, bound to 127.0.0.1 by default) drives a
``Segmenter``: load a support set and queries, see overlays and probability maps, correct a prediction with a
brush and add it to the support set (the in-context loop), download masks and the support set. Nothing leaves the
machine. ``state.Session`` holds the work, ``server`` is the web layer, ``static/`` the page. The web packages
are the ``app`` extra: ``pip install 'universeg-jax[app]'``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

PROG = "universeg-jax app"


def add_parser(commands) -> argparse.ArgumentParser:
    """Register the ``app`` subcommand on the ``universeg-jax`` command's subparsers."""
    from universeg_jax import cli  # the model and volume options it shares with ``segment``

    parser = commands.add_parser(
        "app",
        help="start a local web app: segment by example in your browser",
        description=(
            "Start a local web app and print its address. In the page: load support images with their labels "
            "(files or folders; 2D images or NIfTI volumes) and query images or volumes, see each prediction as an "
            "overlay and a probability map, correct it with a brush and add it to the support set, and download "
            "masks and the support set. Images stay on this machine."
        ),
    )
    cli.add_model_options(parser)
    cli.add_volume_options(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; the app has no login, "
        "so listen on other addresses only on a network you trust)",
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    return parser


def main(args) -> None:
    """Load the weights, bind the port, print the address and serve until Ctrl+C."""
    missing = [name for name in ("starlette", "uvicorn", "python_multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeError(
            f"the app needs the web packages ({', '.join(missing)} missing): pip install 'universeg-jax[app]'"
        )
    from universeg_jax.app import server
    from universeg_jax.app.state import Session
    from universeg_jax.inference import Segmenter

    segmenter = Segmenter.from_weights(args.weights, size=args.size)
    sock = server.bind(args.host, args.port)
    workdir = tempfile.mkdtemp(prefix="universeg-jax-app-")
    try:
        weights = str(Path(args.weights).resolve()) if args.weights and Path(args.weights).exists() else args.weights
        session = Session(segmenter, workdir, axis=args.axis, slices_per_volume=args.slices_per_volume, weights=weights)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"{PROG}: warning: listening on {args.host}: anyone who can reach this machine can use the app",
                file=sys.stderr,
            )
        print(
            f"{PROG}: open {server.address(sock)} in your browser (Ctrl+C stops; uploads live only until then, "
            "so download what you want to keep)",
            flush=True,
        )
        server.serve(session, sock)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after its clean shutdown
        pass
    finally:
        sock.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{PROG}: stopped", file=sys.stderr)
