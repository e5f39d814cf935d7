"""The ``amp`` command: train, evaluate, plugins, plot."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from amp_core.errors import AmpError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amp", description="Train and use machine-learning interatomic potentials.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a potential from a TOML config")
    p.add_argument("config")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.json")
    p.add_argument("--cores", type=int, help="worker count (overrides [backend] cores)")
    p.add_argument("--quiet", action="store_true", help="write progress rows to train-log.txt only")
    p = sub.add_parser("evaluate", help="print energy and force errors of a potential on data")
    p.add_argument("model", help="potential file (.json from amp train, or an Amp .amp file)")
    p.add_argument("data", nargs="+", help="labelled structures (any ASE-readable file)")
    p.add_argument("--no-forces", action="store_true", help="evaluate energies only")
    p.add_argument("--backend", default="serial")
    p.add_argument("--cores", type=int)
    p = sub.add_parser("plugins", help="list registered descriptors, models and backends")
    p.add_argument("--kind", choices=("descriptor", "model", "backend"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="also show entry point and module file")
    p = sub.add_parser("plot", help="parity or convergence plot (PNG; needs matplotlib)")
    p.add_argument("what", choices=("parity", "convergence"))
    p.add_argument("inputs", nargs="+", help="parity: MODEL DATA...; convergence: train-log.txt")
    p.add_argument("-o", "--output", help="PNG file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``amp`` command; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except AmpError as exc:
        print(f"amp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"amp {args.command}: interrupted", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from amp_core.training import train

    overrides = {"backend": {"cores": args.cores}} if args.cores is not None else None
    potential = train(args.config, resume=args.resume, overrides=overrides,
                      echo=None if args.quiet else sys.stdout)
    info = potential.training or {}
    return 0 if info.get("converged") else 1


def _evaluate(args: argparse.Namespace) -> int:
    from amp_core import create_backend, evaluate_loss, load

    potential = load(args.model)
    forces = not args.no_forces and "forces" in potential.implemented_properties
    backend = create_backend(args.backend, **({"cores": args.cores} if args.cores else {}))
    try:
        result = evaluate_loss(args.data, potential, backend, forces=forces)
    finally:
        backend.close()
    print(f"energy RMSE {result.energy_rmse:.6e} eV/atom   max |dE|/N {result.energy_maxresid:.6e} eV/atom")
    if forces:
        print(f"force  RMSE {result.force_rmse:.6e} eV/A      max |dF|   {result.force_maxresid:.6e} eV/A")
    return 0


def plugin_rows(kind: str | None = None) -> list[dict[str, Any]]:
    """Return one row per registered name and per failed entry point (stable keys)."""
    from amp_core.manager import KINDS, PluginManager

    manager = PluginManager()
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
                         "entry_point": reg.plugin_name, "module": record.module_file if record else ""})
    for record in manager.records:
        if record.status in ("failed", "disabled"):
            rows.append({"kind": "?", "name": record.entry_point, "distribution": record.distribution,
                         "version": record.version,
                         "status": f"failed: {record.error}" if record.status == "failed" else "disabled",
                         "summary": "", "entry_point": record.entry_point, "module": ""})
    return rows


def _plugins(args: argparse.Namespace) -> int:
    rows = plugin_rows(args.kind)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("No plugins are registered (is amp-core installed? try 'pip install amp-core').")
        return 0
    headers = ["KIND", "NAME", "PROVIDER", "STATUS"] + (["ENTRY POINT", "MODULE"] if args.verbose else [])
    table = [[r["kind"], r["name"], f"{r['distribution']} {r['version']}".strip(), r["status"]]
             + ([r["entry_point"], r["module"]] if args.verbose else []) for r in rows]
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
            raise SystemExit("amp plot parity: give MODEL and at least one DATA file")
        path = parity_plot(args.inputs[0], args.inputs[1:], args.output)
    print(f"wrote {path}")
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "plugins": _plugins, "plot": _plot}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
