"""Benchmark: accuracy of the default settings on real DFT data, against Amp's defaults.

For each data set (mlearn Mo and Ge, the shipped Pt/Cu EMT slabs) it trains, on this
machine, with

* ``defaults``: a config naming only the descriptor (``gaussian`` and the elements), the
  model (``neuralnetwork``), the backend, the training file, ``validation_fraction = 0.1``
  and ``max_time`` -- the acceptance configuration of issue 12;
* ``amp``: Amp's defaults (``preset = "amp"`` symmetry functions, a (5, 5) network,
  force_coefficient 0.04, L-BFGS-B), same data, same time;
* ``bfgs``, ``cg``: the defaults with another built-in optimiser (``--optimizers``),

then evaluates each potential on the test file through the ASE calculator (``amp
evaluate``), and prints test MAE/RMSE, wall time, iterations, and the time at which the
validation force RMSE first came within 5% of its best (how soon the run had its final
accuracy). A learning-curve PNG (validation RMSE against time) is written when matplotlib
is installed (``pip install ".[plot]"``).

Run: ``python benchmarks/bench_accuracy.py [--sets Mo Ge PtCu] [--max-time 600]
[--configs defaults amp angular:5.0] [--optimizers bfgs cg ekf lbfgs:maxcor=50] [--out bench-accuracy]``
(an optimiser's settings after a colon, as ``[training.optimizer_options]`` takes them). Each run takes
``--max-time`` seconds plus set-up; the full table takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "data"
SETS = {
    "Mo": (["Mo"], DATA / "mlearn" / "Mo-training.extxyz", DATA / "mlearn" / "Mo-test.extxyz"),
    "Ge": (["Ge"], DATA / "mlearn" / "Ge-training.extxyz", DATA / "mlearn" / "Ge-test.extxyz"),
    "PtCu": (["Cu", "Pt"], DATA / "ptcu-train.xyz", DATA / "ptcu-validation.xyz"),
}
"""name -> (elements, training file, test file)."""

PUBLISHED = {
    "Si (PyXtal_FF, BPNN, 4,000 BFGS epochs)": (9.25, 0.120),
}
"""Published test MAEs (energy meV/atom, force eV/A) quoted for scale."""


def config(elements: list[str], train: Path, kind: str, max_time: float, directory: Path) -> str:
    """Return the TOML text of one run (``kind``: defaults, amp, ``"angular:5.0"`` (the defaults with that
    ``angular_cutoff``), or an optimiser name with optional settings, ``"lbfgs:maxcor=50"``)."""
    descriptor = f'name = "gaussian"\nelements = {json.dumps(elements)}\n'
    model = 'name = "neuralnetwork"\n'
    training = f"max_time = {max_time}\ndirectory = \"{directory}\"\n"
    if kind == "amp":
        descriptor += 'preset = "amp"\n'
        model += "hiddenlayers = [5, 5]\n"
        training += 'optimizer = "lbfgs"\nforce_coefficient = 0.04\n'
    elif kind.startswith("angular:"):  # the defaults with a shorter cutoff radius of the angular functions
        descriptor += f"angular_cutoff = {float(kind.partition(':')[2])}\n"
    elif kind != "defaults":  # an optimiser, with options as "name:key=value,key=value"
        name, _, options = kind.partition(":")
        training += f'optimizer = "{name}"\n'
        if options:
            pairs = (item.split("=", 1) for item in options.split(","))
            training += "\n[training.optimizer_options]\n" + "".join(f"{k} = {v}\n" for k, v in pairs)
    return (f"[descriptor]\n{descriptor}\n[model]\n{model}\n[backend]\nname = \"multiprocessing\"\n\n"
            f"[data]\ntrain = \"{train}\"\nvalidation_fraction = 0.1\n\n[training]\n{training}")


def curve(log: Path) -> list[tuple[float, float, float]]:
    """Return (time s, validation energy RMSE, validation force RMSE) of every validated row of a train log."""
    rows = []
    columns: list[str] = []
    for line in log.read_text().splitlines():
        words = line.split()
        if words[:2] == ["iter", "time/s"]:
            columns = words
        elif columns and words and words[0].isdigit() and "V_F_rmse" in columns and len(words) > columns.index("V_F_rmse"):
            if words[columns.index("V_E_rmse")] != "-":
                rows.append((float(words[1]), float(words[columns.index("V_E_rmse")]),
                             float(words[columns.index("V_F_rmse")])))
    return rows


def evaluate(potential: Path, test: Path) -> dict[str, float]:
    """Return the test-set errors ``amp evaluate`` prints (E meV/atom, F eV/A)."""
    done = subprocess.run([sys.executable, "-m", "amp_core.cli", "evaluate", str(potential), str(test)],
                          capture_output=True, text=True, check=True)
    for line in done.stdout.splitlines():
        words = line.split()
        if len(words) >= 9 and words[1].isdigit() and words[2].isdigit():  # file, images, atoms, errors...
            keys = ("E_MAE", "E_RMSE", "E_max", "F_MAE", "F_RMSE", "F_max", "extrapolating")
            return dict(zip(keys, map(float, words[3:])))
    raise RuntimeError(f"no result row in amp evaluate's output:\n{done.stdout}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--configs", nargs="+", default=["defaults", "amp"])
    parser.add_argument("--optimizers", nargs="*", default=[], help="more built-in optimisers with the defaults")
    parser.add_argument("--max-time", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=Path("bench-accuracy"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.sets:
        elements, train, test = SETS[name]
        for kind in [*args.configs, *args.optimizers]:
            folder = (args.out / f"{name}-{kind}").resolve()
            path = args.out / f"{name}-{kind}.toml"
            path.write_text(config(elements, train, kind, args.max_time, folder))
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "amp_core.cli", "train", str(path), "--quiet"],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode not in (0, 1):
                print(f"{name} {kind}: amp train failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
                continue
            saved = json.loads((folder / "potential.json").read_text())
            errors = evaluate(folder / "potential.json", test)
            rows = curve(folder / "train-log.txt")
            best = min(r[2] for r in rows) if rows else float("nan")
            reached = next((t for t, _, f in rows if f <= 1.05 * best), float("nan"))
            results.append({"set": name, "config": kind, "wall_s": wall, "iterations": saved["training"]["iterations"],
                            "reached_s": reached, **errors, "curve": rows})
            print(f"{name:5s} {kind:9s} E MAE {errors['E_MAE']:7.2f} RMSE {errors['E_RMSE']:7.2f} meV/atom   "
                  f"F MAE {errors['F_MAE']:6.3f} RMSE {errors['F_RMSE']:6.3f} eV/A   {wall:6.0f} s, "
                  f"{saved['training']['iterations']} iterations, within 5% of the best validation force "
                  f"RMSE at {reached:.0f} s", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| set | settings | test E MAE / RMSE (meV/atom) | test F MAE / RMSE (eV/Å) | time | iterations |"
          " final accuracy reached at |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['set']} | {r['config']} | {r['E_MAE']:.2f} / {r['E_RMSE']:.2f} | {r['F_MAE']:.3f} / "
              f"{r['F_RMSE']:.3f} | {r['wall_s']:.0f} s | {r['iterations']} | {r['reached_s']:.0f} s |")
    for label, (e, f) in PUBLISHED.items():
        print(f"published for scale: {label}: test E MAE {e} meV/atom, F MAE {f} eV/A")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no learning-curve PNG; pip install '.[plot]')")
        return
    fig, axes = plt.subplots(1, len(args.sets), figsize=(5 * len(args.sets), 4), squeeze=False)
    for ax, name in zip(axes[0], args.sets):
        for r in (r for r in results if r["set"] == name and r["curve"]):
            t, _, f = zip(*r["curve"])
            ax.plot(t, f, label=r["config"])
        ax.set(title=name, xlabel="time / s", ylabel="validation force RMSE / eV/A", yscale="log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "learning-curves.png", dpi=100)
    print(f"learning curves: {args.out / 'learning-curves.png'}")


if __name__ == "__main__":
    main()
