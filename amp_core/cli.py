"""The ``amp`` command: train, evaluate, plugins, plot.

Exit codes: 0 success (``train``: converged), 1 ``train`` stopped by ``maxiter`` (potential
saved), 2 bad input or configuration, 3 run-time failure (worker, disk, internal error),
130 interrupted (Ctrl-C or SIGTERM; ``train`` saves its checkpoint first). Errors print
``amp <command>: error: <message>`` on stderr, never a traceback: that goes to the run's
``train-log.txt`` or to ``amp-error.log`` (see :func:`write_traceback`); ``--debug`` prints it too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from amp_core.errors import (
    AmpError,
    ConfigError,
    ModelFileError,
    PluginError,
    PropertyNotImplementedError,
)
from amp_core.memory import parse_size

if TYPE_CHECKING:
    from amp_core.manager import PluginManager

EXIT_INPUT = 2  # bad input or configuration
EXIT_RUN = 3  # run-time failure: worker, disk, internal error
EXIT_INTERRUPTED = 130
INPUT_ERRORS = (ConfigError, ModelFileError, PluginError, PropertyNotImplementedError)
ERROR_LOG = "amp-error.log"


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite 'amp --debug <command>'.
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="also print the full traceback of an error on stderr")
    debug.add_argument("--max-memory", default=argparse.SUPPRESS, metavar="SIZE",
                       help="memory budget checked before large work, e.g. 8G (default: half of this "
                            "machine's memory; also AMP_MAX_MEMORY)")
    parser = argparse.ArgumentParser(prog="amp", description="Train and use machine-learning interatomic potentials.")
    parser.add_argument("--debug", action="store_true", help="also print the full traceback of an error on stderr")
    parser.add_argument("--max-memory", metavar="SIZE", help="memory budget, e.g. 8G (see the subcommands)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", parents=[debug], help="train a potential from a TOML config")
    p.add_argument("config")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.json")
    p.add_argument("--cores", type=int, help="worker count (overrides [backend] cores)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the final outcome line; the full log is in train-log.txt")
    p.add_argument("--log-every", type=int, default=1, metavar="N",
                   help="print every Nth iteration row, and the first and last (train-log.txt keeps all)")
    p = sub.add_parser("evaluate", parents=[debug], help="print energy and force errors of a potential on data")
    p.add_argument("model", help="potential file (.json from amp train, or an Amp .amp file)")
    p.add_argument("data", nargs="+", help="labelled structures (any ASE-readable file)")
    p.add_argument("--no-forces", action="store_true", help="evaluate energies only")
    p.add_argument("--backend", default="serial")
    p.add_argument("--cores", type=int, help="worker count of the backend (not for 'serial')")
    p = sub.add_parser("plugins", parents=[debug], help="list registered descriptors, models and backends")
    p.add_argument("--kind", choices=("descriptor", "model", "backend", "optimizer"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show compiled kernels, entry point and module file")
    p = sub.add_parser("plot", parents=[debug], help="parity or convergence plot (PNG; needs matplotlib)")
    p.add_argument("what", choices=("parity", "convergence"))
    p.add_argument("inputs", nargs="+", help="parity: MODEL DATA...; convergence: train-log.txt")
    p.add_argument("-o", "--output", help="PNG file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``amp`` command; return the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv, args.started = argv, time.time()
    prog = f"amp {args.command}"
    with _sigterm_interrupts() as terminated:
        try:
            if args.max_memory is not None:
                os.environ["AMP_MAX_MEMORY"] = str(parse_size(args.max_memory, "--max-memory"))
            return int(COMMANDS[args.command](args))
        except KeyboardInterrupt:
            if args.debug:
                traceback.print_exc(file=sys.stderr)
            print(f"{prog}: interrupted" + (" (SIGTERM)" if terminated else ""), file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - every error becomes a message and an exit code
            return report(prog, args, exc)


def exit_code(exc: BaseException) -> int:
    """Return the ``amp`` exit code for an exception that ended a command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INPUT if isinstance(exc, INPUT_ERRORS) else EXIT_RUN


def report(prog: str, args: argparse.Namespace, exc: Exception) -> int:
    """Print a short message for ``exc`` on stderr, store its traceback; return the exit code."""
    code = exit_code(exc)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    where = write_traceback(args, text, input_error=code == EXIT_INPUT)
    if args.debug:
        print(text, file=sys.stderr, end="")
    if isinstance(exc, (AmpError, OSError)):
        name = f"{type(exc).__name__}: " if isinstance(exc, OSError) else ""
        print(f"{prog}: error: {name}{_summary(exc)}", file=sys.stderr)
    else:
        print(f"{prog}: internal error: {type(exc).__name__}: {_summary(exc)}\n"
              f"{prog}: this is a bug in amp-core or a plugin; please report it with the traceback",
              file=sys.stderr)
    if where is not None:
        print(f"{prog}: the full traceback is in {where}" + ("" if args.debug else " (--debug prints it)"),
              file=sys.stderr)
    return code


def _summary(exc: BaseException) -> str:
    """Return the message of ``exc`` without any traceback it carries (worker errors do)."""
    lines = []
    for line in str(exc).splitlines():
        if line.startswith(("Worker traceback:", "Traceback (most recent call last)")):
            break
        lines.append(line)
    return "\n".join(lines).strip() or type(exc).__name__


def write_traceback(args: argparse.Namespace, text: str, *, input_error: bool = False) -> Path | None:
    """Store a traceback; return where it went, or ``None``.

    ``amp train`` appends it to the run directory's ``train-log.txt`` when that directory
    exists. Otherwise it goes to ``amp-error.log`` in the current directory (or to a temporary
    file when that is not writable). An ``input_error`` explains itself: its traceback is kept
    only in a ``train-log.txt`` this command wrote, so a config typo neither litters the
    current directory nor lands in the log of an earlier run.
    """
    run_dir = _run_dir(args) if args.command == "train" else None
    if run_dir is not None and run_dir.is_dir():
        log = run_dir / "train-log.txt"
        try:
            if not input_error or (log.is_file() and log.stat().st_mtime >= args.started):
                with open(log, "a") as file:
                    file.write(f"error ({_now()}):\n{text}")
                return log
        except OSError:
            pass
    if input_error:
        return None
    document = f"amp {' '.join(args.argv)}: failed at {_now()}\n{text}"
    try:
        path = Path.cwd() / ERROR_LOG
        path.write_text(document)
        return path
    except OSError:
        pass
    try:
        with tempfile.NamedTemporaryFile("w", prefix="amp-error-", suffix=".log", delete=False) as temp:
            temp.write(document)
        return Path(temp.name)
    except OSError:
        return None


def _run_dir(args: argparse.Namespace) -> Path | None:
    """Return the run directory ``amp train`` was given, or ``None`` if its config does not load."""
    from amp_core.config import load_config

    try:
        return load_config(args.config, _overrides(args)).run_dir
    except Exception:  # noqa: BLE001 - no run directory, the caller falls back
        return None


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


@contextmanager
def _sigterm_interrupts() -> Iterator[list[int]]:
    """Turn SIGTERM into ``KeyboardInterrupt`` in the main thread (so training saves a checkpoint).

    Yields a list that holds the signal number once SIGTERM arrived. A second SIGTERM is
    ignored so it cannot break the checkpoint being written. The previous handler is
    restored on exit. Outside the main thread nothing is installed.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]] | None:
    return {"backend": {"cores": args.cores}} if args.cores is not None else None


def _train(args: argparse.Namespace) -> int:
    from amp_core.config import load_config
    from amp_core.training import train

    if args.cores is not None:
        cfg = load_config(args.config)
        check_cores_option(args.cores, cfg.backend["name"], f"{cfg.path}, [backend] name")
    potential = train(args.config, resume=args.resume, overrides=_overrides(args),
                      echo=None if args.quiet else sys.stdout, log_every=args.log_every)
    info = potential.training or {}
    if args.quiet and info.get("outcome"):
        print(info["outcome"])
    return 0 if info.get("converged") else 1


def check_cores_option(cores: int, backend: str, where: str) -> None:
    """Raise :class:`ConfigError` when ``--cores`` is given for a backend that has no worker count.

    Args:
        cores: the ``--cores`` value.
        backend: the backend's name; ``where`` says where it was chosen.
    """
    import dataclasses

    from amp_core.manager import default_manager

    manager = default_manager()
    registered = manager.lookup("backend", backend, where)
    if "cores" in {f.name for f in dataclasses.fields(registered.entry.params)}:
        return
    with_cores = [name for name, reg in manager.registered("backend").items()
                  if "cores" in {f.name for f in dataclasses.fields(reg.entry.params)}]
    raise ConfigError(f"option --cores {cores}: backend {backend!r} ({where}) has no cores to set: it runs "
                      "in this process, with no workers. Leave out --cores, or choose a backend with "
                      f"workers ({', '.join(with_cores) or 'none installed'}).")


def _evaluate(args: argparse.Namespace) -> int:
    from amp_core import create_backend, evaluate_loss, load
    from amp_core.chunks import oversubscription
    from amp_core.ensemble import members_of
    from amp_core.errors import DataError
    from amp_core.evaluation import file_errors, summary, table

    potential = load(args.model)
    forces = not args.no_forces and "forces" in potential.implemented_properties
    if args.cores is not None:
        check_cores_option(args.cores, args.backend, "--backend")
    backend = create_backend(args.backend, **({"cores": args.cores} if args.cores is not None else {}))
    warning = oversubscription(backend.cores)
    if warning:
        print(f"amp evaluate: {warning}", file=sys.stderr)
    result = None
    try:  # the calculator in this process (one pass per image); the backend only for an ensemble's members
        rows = [file_errors(potential, source, forces) for source in args.data]
        if members_of(potential.model) is not None:  # each member's errors: the loss pipeline has them
            result = evaluate_loss(args.data, potential, backend, forces=forces)
    except DataError as exc:
        if exc.missing != "forces":
            raise
        raise DataError(f"{exc.origin}: no reference forces to compare the predicted forces with; "
                        "evaluate energies only with --no-forces, or label the forces",
                        origin=exc.origin, missing="forces") from exc
    finally:
        backend.close()
    for line in table(rows):
        print(line)
    if result is not None and result.members:  # the table has the ensemble mean's errors; these the members'
        print(f"members: {len(result.members)}; each member's energy RMSE (eV/atom): "
              + " ".join(f"{m.energy_rmse:.4e}" for m in result.members))
        if forces:
            print("each member's force RMSE (eV/A): " + " ".join(f"{m.force_rmse:.4e}" for m in result.members))
        return 0
    total = summary(rows)
    print(f"energy RMSE {total.energy_rmse:.6e} eV/atom   max |dE|/N {total.energy_max:.6e} eV/atom")
    if forces:
        print(f"force  RMSE {total.force_rmse:.6e} eV/A      max |dF|   {total.force_max:.6e} eV/A")
    return 0


def plugin_rows(kind: str | None = None, manager: PluginManager | None = None) -> list[dict[str, Any]]:
    """Return one row per registered name and per failed entry point.

    Stable keys: ``kind``, ``name``, ``distribution``, ``version``, ``status`` (``active``,
    ``unavailable: <why>``, ``failed: <error>``, ``disabled``), ``summary``, ``kernels``
    (descriptors and models: ``built`` when the plugin implements ``COMPILED`` and its kernels
    load here, ``unavailable: <why>`` when its probe says they do not, ``""`` without compiled
    kernels), ``entry_point``, ``module``.

    Args:
        kind: only this kind (``None``: every kind).
        manager: the plugins to list (``None``: the installed ones, loaded afresh).
    """
    from amp_core.manager import KINDS, PluginManager

    manager = PluginManager() if manager is None else manager
    rows = []
    for k in KINDS if kind is None else (kind,):
        for name, reg in manager.registered(k).items():
            status = "active"
            if k == "backend":
                why = reg.entry.probe()
                status = f"unavailable: {why}" if why else "active"
            record = next((r for r in manager.records if r.entry_point == reg.plugin_name), None)
            rows.append({"kind": k, "name": name, "distribution": reg.distribution, "version": reg.version,
                         "status": status, "summary": reg.entry.summary,
                         "kernels": "" if k == "backend" else _kernels(manager, k, name, reg.entry),
                         "entry_point": reg.plugin_name, "module": record.module_file if record else ""})
    for record in manager.records:
        if record.status in ("failed", "disabled"):
            rows.append({"kind": "?", "name": record.entry_point, "distribution": record.distribution,
                         "version": record.version,
                         "status": f"failed: {record.error}" if record.status == "failed" else "disabled",
                         "summary": "", "kernels": "", "entry_point": record.entry_point, "module": ""})
    return rows


def _kernels(manager: PluginManager, kind: str, name: str, entry: Any) -> str:
    """Return the ``kernels`` cell of a descriptor or model (see :func:`plugin_rows`)."""
    from amp_core.protocols import COMPILED

    try:
        why = entry.probe()
    except Exception as exc:  # noqa: BLE001 - a broken probe must not break the listing
        why = f"the probe failed: {type(exc).__name__}: {exc}"
    if why:
        return f"unavailable: {why}"
    return "built" if COMPILED in _implemented(manager, kind, name, entry) else ""


def _implemented(manager: PluginManager, kind: str, name: str, entry: Any) -> frozenset[str]:
    """Return the capabilities of plugin ``name``: of an object built with default parameters,
    else those its class declares (``implemented`` class attribute), else none known."""
    try:
        return frozenset(manager.create(kind, name, {}).implemented)
    except Exception:  # noqa: BLE001 - e.g. a required parameter: fall back to the class
        declared = getattr(entry.factory, "implemented", None) if isinstance(entry.factory, type) else None
        return frozenset(declared) if isinstance(declared, (set, frozenset)) else frozenset()


def _plugins(args: argparse.Namespace) -> int:
    rows = plugin_rows(args.kind)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("No plugins are registered (is amp-core installed? run 'pip install .' in its source folder).")
        return 0
    extra = ["KERNELS", "ENTRY POINT", "MODULE"] if args.verbose else []
    headers = ["KIND", "NAME", "PROVIDER", "STATUS", *extra]
    table = [[r["kind"], r["name"], f"{r['distribution']} {r['version']}".strip(), r["status"]]
             + ([r["kernels"] or "-", r["entry_point"], r["module"]] if args.verbose else []) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table)]
    for line in [headers, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    return 0


def _plot(args: argparse.Namespace) -> int:
    from amp_core.plotting import convergence_plot, parity_plot

    if args.what == "convergence":
        path = convergence_plot(args.inputs[0], args.output)
    else:
        if len(args.inputs) < 2:
            raise ConfigError("give MODEL and at least one DATA file")
        path = parity_plot(args.inputs[0], args.inputs[1:], args.output)
    print(f"wrote {path}")
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "plugins": _plugins, "plot": _plot}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
