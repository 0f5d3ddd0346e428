"""The options every ``shoprank`` command spells the same way, defined once.

- ``--address ADDRESS``  the Ray cluster to run on (as ``ray.init(address=...)``; default
  ``$RAY_ADDRESS``, else a local Ray);
- ``--submit URL``       a Ray job server: submit the command as a Ray job instead of running it;
- ``--target HOST:PORT`` a running gRPC search server (``shoprank serve``), with ``--token-file``
  (or ``$SHOPRANK_TOKEN``; ``--token`` for local use, visible in ``ps``), ``--tls``, ``--ca``,
  ``--timeout``, ``--name`` for a client command (:func:`add_client`);
- ``--out PATH``         where results go;
- ``--no-wait``          after ``--submit``: return once submitted, do not follow the logs.

Old spellings still parse, hidden, and the entry points print a one-line deprecation warning
for each (:func:`warn_deprecated`): ``--output`` (use ``--out``), ``--no-follow`` (``--no-wait``),
``--address`` for a gRPC server (``--target``), ``--address`` for a job server (``--submit``:
any value in ``campaign submit|status``; an http(s) URL where ``--address`` is a Ray cluster).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoprank.serving.client import SearchClient

JOB_SERVER_SCHEMES = ("http://", "https://")
DEPRECATED = "deprecated_options"  # namespace attribute listing the old spellings used


def _deprecated(ns: argparse.Namespace, old: str, new: str) -> None:
    """Note an old spelling on the namespace; :func:`warn_deprecated` prints the notes."""
    notes = getattr(ns, DEPRECATED, None) or []
    notes.append(f"{old} is deprecated; use {new}")
    setattr(ns, DEPRECATED, notes)


def warn_deprecated(ns: argparse.Namespace, prog: str = "shoprank") -> None:
    """Print one warning line per old spelling the command line used (the entry points call this)."""
    for note in getattr(ns, DEPRECATED, None) or []:
        print(f"{prog}: warning: {note}", file=sys.stderr)


class _Alias(argparse.Action):
    """A hidden old spelling: stores into the new option's dest and notes the deprecation."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, opt: str | None = None):
        _deprecated(ns, str(opt), self.new)
        setattr(ns, self.dest, True if self.nargs == 0 else values)


class _Address(argparse.Action):
    """``--address``: a Ray cluster; an http(s) URL (the old job-server meaning) goes to --submit."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, opt: str | None = None):
        if isinstance(values, str) and values.startswith(JOB_SERVER_SCHEMES) and hasattr(ns, "submit"):
            _deprecated(ns, f"--address {values} (a job server)", f"--submit {values}")
            ns.submit = values
        else:
            setattr(ns, self.dest, values)


def add_address(p: argparse.ArgumentParser) -> None:
    """``--address``: the Ray cluster this process runs on."""
    p.add_argument(
        "--address",
        default=None,
        action=_Address,
        metavar="ADDRESS",
        help="Ray cluster to run on, as ray.init(address=...): 'auto', HOST:PORT or ray://... "
        "(default: $RAY_ADDRESS, else a local Ray)",
    )


def add_submit(
    p: argparse.ArgumentParser, *, required: bool = False, address_alias: bool = False, help: str | None = None
) -> None:
    """``--submit URL`` (a Ray job server); ``address_alias``: also accept the old ``--address URL``
    (for commands where --address never meant a Ray cluster)."""
    group = p.add_mutually_exclusive_group(required=required)  # the alias satisfies `required` too
    group.add_argument(
        "--submit",
        default=None,
        metavar="URL",
        help=help
        or "Ray job server (dashboard), e.g. http://HEAD:8265: submit as a Ray job with this directory as the "
        "working dir",
    )
    if address_alias:
        group.add_argument("--address", dest="submit", action=_Alias, new="--submit", default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)  # fmt: skip


def add_no_wait(p: argparse.ArgumentParser) -> None:
    """``--no-wait`` (old: ``--no-follow``)."""
    p.add_argument("--no-wait", action="store_true", help="with --submit: return after submitting, do not follow")
    p.add_argument("--no-follow", dest="no_wait", action=_Alias, new="--no-wait", nargs=0,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # fmt: skip


def add_target(p: argparse.ArgumentParser, default: str = "localhost:9000") -> None:
    """``--target HOST:PORT``: a running gRPC server (old: ``--address``)."""
    p.add_argument("--target", default=default, metavar="HOST:PORT", help=f"gRPC server (default {default})")
    p.add_argument("--address", dest="target", action=_Alias, new="--target", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # fmt: skip


def add_out(p: argparse.ArgumentParser, *, help: str, required: bool = False, **kwargs: Any) -> None:
    """``--out`` (old: ``--output``)."""
    p.add_argument("--out", required=required, help=help, **kwargs)
    p.add_argument("--output", dest="out", action=_Alias, new="--out", default=argparse.SUPPRESS,
                   type=kwargs.get("type"), help=argparse.SUPPRESS)  # fmt: skip


RUNTIME_HELP = (
    "what the encoder runs on: torch (eager fp32), onnx (ONNX Runtime fp32) or onnx-int8 (int8 weights; "
    "default torch). ONNX files are exported next to the checkpoint when missing; a variant the parity gate "
    "refused falls back with a warning (docs/encoder_runtime.md)"
)


def add_encoder_runtime(p: argparse.ArgumentParser) -> None:
    """``--encoder-runtime torch|onnx|onnx-int8`` (serving, campaigns, index builds)."""
    p.add_argument("--encoder-runtime", default="torch", choices=["torch", "onnx", "onnx-int8"], help=RUNTIME_HELP)


TOKEN_HELP = "bearer token; local use only: any user on the machine sees it in `ps` (prefer --token-file)"
TOKEN_FILE_HELP = "file holding the bearer token (chmod 600); default: $SHOPRANK_TOKEN"


def add_token(p: argparse.ArgumentParser, token_help: str = TOKEN_HELP) -> None:
    """``--token-file FILE`` and ``--token TOKEN`` (visible in ``ps``); :func:`token_of` resolves them."""
    p.add_argument("--token-file", default=None, metavar="FILE", help=TOKEN_FILE_HELP)
    p.add_argument("--token", default=None, help=token_help)


def token_of(args: argparse.Namespace) -> str | None:
    """The token :func:`add_token`'s options give: --token, else --token-file, else $SHOPRANK_TOKEN."""
    from shoprank.serving.auth import token_from

    return token_from(getattr(args, "token", None), getattr(args, "token_file", None))


def add_client(p: argparse.ArgumentParser, timeout: float = 10.0) -> None:
    """How a command reaches a running gRPC server: ``--target``, ``--token-file``/``--token``, ``--tls``,
    ``--ca``, ``--timeout``, ``--name`` (the Serve application)."""
    add_target(p)
    add_token(p)
    p.add_argument("--tls", action="store_true", help="use TLS")
    p.add_argument("--ca", default=None, help="CA / self-signed certificate PEM to trust (implies --tls)")
    p.add_argument("--timeout", type=float, default=timeout, help=f"deadline per call in seconds (default {timeout:g})")
    p.add_argument("--name", default="shoprank", help="Serve application name (default shoprank)")


def client_of(args: argparse.Namespace) -> SearchClient:
    """The :class:`~shoprank.serving.client.SearchClient` that :func:`add_client`'s options describe."""
    from shoprank.serving.client import SearchClient

    return SearchClient(args.target, application=args.name, token=token_of(args), tls=args.tls or bool(args.ca),
                        ca_file=args.ca, timeout=args.timeout)  # fmt: skip
