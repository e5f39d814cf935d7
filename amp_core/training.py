"""Training: optimiser loop, convergence, checkpoints, resume and ``train-log.txt``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from amp_core.calculator import Potential, load
from amp_core.chunks import detect_cores, oversubscription
from amp_core.config import (
    Config,
    Convergence,
    build,
    build_optimizer,
    from_dict,
    load_config,
    model_settings,
    resolved,
    settle,
)
from amp_core.data import LossResult
from amp_core.ensemble import Ensemble, members_of
from amp_core.errors import ConfigError, RunError
from amp_core.images import all_have_forces
from amp_core.journal import JOURNAL, Journal, ReplayMismatch
from amp_core.lockstep import Lockstep, MemberLoss
from amp_core.loss import LossFunction, can_train_forces, share
from amp_core.manager import PluginManager, resolve
from amp_core.pipeline import _quiet
from amp_core.rundir import RunLock, differences, rotate_log
from amp_core.store import write_json
from amp_core.validation import Monitor, default_interval, training_sources

CRITERIA = ("energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid")
CHECKPOINT = "checkpoint.json"
MODEL_FILE = "potential.json"


class TrainLog:
    """Append lines to ``train-log.txt`` and echo them to a stream.

    Every line goes to the file. Iteration rows (:meth:`row`) reach the stream only for
    iterations that are multiples of ``every``, the first row, and the last one (which
    :meth:`end_rows` shows if it was held back).
    """

    def __init__(self, path: Path, echo: TextIO | None = sys.stdout, every: int = 1) -> None:
        self.path = path
        self.echo = echo
        self.every = every
        self._file = open(path, "a", buffering=1)
        self._rows = 0
        self._held: str | None = None

    def __call__(self, line: str) -> None:
        self._file.write(line + "\n")
        self._show(line)

    def row(self, iteration: int, line: str) -> None:
        """Log the row of ``iteration``; echo it when it is due (see the class docstring)."""
        self._file.write(line + "\n")
        self._rows += 1
        if self._rows == 1 or iteration % self.every == 0:
            self._show(line)
            self._held = None
        else:
            self._held = line

    def end_rows(self) -> None:
        """Echo the last row if it was held back (call when the rows end)."""
        if self._held is not None:
            self._show(self._held)
            self._held = None

    def _show(self, line: str) -> None:
        if self.echo is not None:
            self.echo.write(line + "\n")
            self.echo.flush()

    def close(self) -> None:
        self._file.close()


class _Stopped(Exception):
    """Raised from the optimiser callback when a limit other than maxiter is reached (max_time)."""


class _Converged(Exception):
    """Raised from the optimiser callback when every criterion is met."""


def met(result: LossResult, convergence: Convergence) -> dict[str, bool]:
    """Return, for each criterion that is set, whether ``result`` meets it."""
    out = {}
    for name in CRITERIA:
        target = getattr(convergence, name)
        if target is not None:
            out[name] = getattr(result, name) <= target
    return out


def _header(log: TrainLog, config: Config, descriptor: Any, model: Any, backend: Any,
            manager: PluginManager) -> None:
    from amp_core import __version__

    describe = getattr(backend, "describe", None)  # a backend may state its own layout (MPI: ranks, hosts)
    if describe is not None:
        for line in describe():
            log(line)
    else:
        cores = detect_cores()
        log(f"cores detected: {cores}, used: {backend.cores}")
        warning = oversubscription(backend.cores, cores)
        if warning:
            log(warning)
    log(f"amp-core {__version__}, backend: {backend.name} ({backend.cores} worker(s))")
    parts = []
    for kind, plugin in (("descriptor", descriptor), ("model", model), ("backend", backend)):
        dist, version = manager.provider(kind, plugin.name)
        parts.append(f"{kind} {plugin.name} ({dist} {version})")
    log("plugins: " + ", ".join(parts))
    log(f"config: {config.path}; run directory: {config.run_dir}")


def _row(iteration: int, result: LossResult, flags: dict[str, bool], elapsed: float, extra: str = "") -> str:
    marks = " ".join(f"{name}{'*' if ok else '-'}" for name, ok in flags.items())
    return (f"{iteration:6d} {elapsed:9.1f} {result.loss:12.5e} {result.energy_rmse:10.3e} "
            f"{result.energy_maxresid:10.3e} {result.force_rmse:10.3e} {result.force_maxresid:10.3e}{extra}  {marks}")


def save_checkpoint(potential: Potential, run_dir: Path, iteration: int, journal: Journal | None = None) -> Path:
    """Save the potential with the iteration count (and the optimiser journal's extent) as ``checkpoint.json`` (atomic)."""
    document = potential.todict_document()
    document["iteration"] = iteration
    recorded = None if journal is None else journal.sync()
    if recorded is not None:
        document["journal"] = {**recorded, "base": journal.base}  # type: ignore[union-attr]
    return write_json(document, run_dir / CHECKPOINT)


def train(config: str | os.PathLike[str] | dict[str, Any] | Config, *, resume: bool = False,
          overrides: dict[str, dict[str, Any]] | None = None, echo: TextIO | None = sys.stdout,
          log_every: int = 1, progress: bool | None = None, manager: PluginManager | None = None) -> Potential:
    """Train a potential as a config describes; return it (also saved as ``potential.json``).

    Args:
        config: a TOML file, a dictionary shaped like one, or a loaded :class:`Config`.
        resume: continue from ``checkpoint.json`` in the run directory.
        overrides: per-table keys replacing the config's (``{"backend": {"cores": 2}}``).
        echo: where the log is echoed besides ``train-log.txt`` (``None``: nowhere).
        log_every: echo every ``log_every``-th iteration row (and the first and last);
            ``train-log.txt`` keeps every row.
        progress: force stage progress lines on/off (default: when on a terminal).
        manager: the :class:`~amp_core.PluginManager` to build the plugins with (``None``:
            the installed plugins); in-process registered plugins train like installed ones.

    Returns:
        The trained :class:`~amp_core.Potential`: an ASE calculator whose ``training`` is
        ``{"converged": bool, "iterations": int, "outcome": str}`` and whose ``config`` is the
        resolved config (defaults filled in), as saved in ``potential.json``.

    Raises:
        ConfigError: a bad config or ``log_every``, before any work starts.

    Ctrl-C saves a checkpoint before the ``KeyboardInterrupt`` propagates; so does any other
    failure while optimising (a worker that died or stopped answering, a full disk), which
    is also logged to ``train-log.txt`` with how to resume. A dictionary's relative paths
    are relative to the current directory.
    """
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ConfigError(f"log_every (--log-every) must be a whole number >= 1, got {log_every!r}")
    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = from_dict({**config, **{k: {**config.get(k, {}), **v} for k, v in (overrides or {}).items()}})
    else:
        cfg = load_config(Path(config), overrides)
    manager = resolve(manager)
    descriptor, model, backend = build(cfg, manager)
    try:
        cfg = settle(cfg, lambda: can_train_forces(descriptor, model) and all_have_forces(list(cfg.data.train)))
    except BaseException:
        backend.close()
        raise
    run_dir = cfg.run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        backend.close()
        raise RunError(f"cannot create the run directory {run_dir}: {exc}") from exc
    settings = resolved(cfg, descriptor, model, backend)  # from the config, also when resuming
    if not getattr(backend, "drives", True):  # an MPI rank other than 0: serve rank 0, write nothing
        try:
            if resume:
                descriptor, model, _ = _restore(run_dir, cfg, model, settings, manager)
            potential = Potential(descriptor, model, config=settings, manager=manager)
            _serve(potential, backend, cfg, run_dir, manager)
        finally:
            backend.close()
        return potential
    with RunLock(run_dir):
        starts = [0] * len(members_of(model) or [model])
        if resume:
            descriptor, model, starts = _restore(run_dir, cfg, model, settings, manager)
        rotated = None if resume else rotate_log(run_dir)
        log = TrainLog(run_dir / "train-log.txt", echo, log_every)
        potential = Potential(descriptor, model, config=settings, manager=manager)
        try:
            if rotated is not None:
                log(f"(the previous run's log was moved to {rotated.name})")
            _run(potential, backend, cfg, log, run_dir, starts, progress, manager)
            share(backend, (potential.model, potential.training))
        finally:
            backend.close()
            log.close()
    return potential


def _restore(run_dir: Path, cfg: Config, model: Any, settings: dict[str, Any],
             manager: PluginManager) -> tuple[Any, Any, list[int]]:
    """Return (descriptor, model, iteration per member) of the run's checkpoint(s): one, or each member's
    (``members/K/checkpoint.json``) for an ensemble (``model``: the one the config builds)."""
    members = members_of(model)
    if members is None:
        descriptor, model, start = _resume(run_dir, cfg, settings, manager)
        return descriptor, model, [start]
    restored, starts = [], []
    for k, member in enumerate(members):
        member_descriptor, member_model, start = _resume(member_dir(run_dir, k), cfg, member_config(settings, member),
                                                         manager)
        restored.append(member_model)
        starts.append(start)
    return member_descriptor, Ensemble(restored), starts


def member_config(settings: dict[str, Any], member: Any) -> dict[str, Any]:
    """The resolved config of an ensemble member: the ensemble's, with the member's own model table (its seed)."""
    return {**settings, "model": model_settings(member)}


def member_dir(run_dir: Path, k: int) -> Path:
    """Where ensemble member ``k`` (from 0) keeps its log, checkpoint, journal and own potential file."""
    return run_dir / "members" / str(k + 1)


def _resume(run_dir: Path, cfg: Config, settings: dict[str, Any], manager: PluginManager) -> tuple[Any, Any, int]:
    """Return (descriptor, model, iteration) of the run's checkpoint, refusing one of another configuration."""
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigError(f"--resume: no checkpoint {checkpoint}; train without --resume first")
    restored = load(checkpoint, manager=manager)
    current = json.loads(json.dumps(settings, default=str))
    changed = differences(restored.config, current, ("descriptor", "model"))
    if changed:
        raise ConfigError(f"--resume: {cfg.path} differs from the configuration {checkpoint} was trained with:\n  "
                          + "\n  ".join(changed) + "\nRestore those settings to resume, or train afresh "
                          "(without --resume, or into another [training] directory).")
    iteration = json.loads(checkpoint.read_text()).get("iteration", 0)
    if type(iteration) is not int or iteration < 0:
        raise ConfigError(f"--resume: {checkpoint} has an invalid iteration count {iteration!r}")
    return restored.descriptor, restored.model, iteration


def _losses(stack: contextlib.ExitStack[Any], potential: Potential, backend: Any, cfg: Config, run_dir: Path,
            manager: PluginManager, log: Any, progress: bool | None, driving: bool = True) -> tuple[Any, Any]:
    """Set up the training loss and, with validation images, the validation loss (in that order, which
    collective backends rely on); return both (the second ``None`` without validation)."""
    train_images, validation_images = training_sources(cfg, run_dir, write=driving)
    coefficients = (cfg.training.energy_coefficient, cfg.force_coefficient, cfg.training.overfit)
    options: dict[str, Any] = {"forces": cfg.forces, "run_dir": run_dir, "log": log, "progress": progress,
                               "manager": manager}
    loss = stack.enter_context(LossFunction(train_images, potential, backend, *coefficients, **options))
    if validation_images is None:
        return loss, None
    return loss, stack.enter_context(LossFunction(validation_images, potential, backend, *coefficients, **options))


def _serve(potential: Potential, backend: Any, cfg: Config, run_dir: Path, manager: PluginManager) -> None:
    """A non-driving rank's part of :func:`_run`: the same collective calls, no optimiser, log or files.

    The loss functions (training, then validation) are set up in rank 0's order (each closes
    at once on this rank: its evaluators wait in the backend); their sessions are then served
    together (``backend.serve()``) until rank 0 closes them.
    """
    backend.serve_later = True
    try:
        with contextlib.ExitStack() as stack:
            _losses(stack, potential, backend, cfg, run_dir, manager, _quiet, False, driving=False)
    finally:
        backend.serve_later = False
    backend.serve()
    potential.model, potential.training = share(backend, None)  # rank 0's trained model


def _run(potential: Potential, backend: Any, cfg: Config, log: TrainLog, run_dir: Path, starts: list[int],
         progress: bool | None, manager: PluginManager) -> None:
    """Log the header, set up the loss (and the validation loss), optimise, report."""
    descriptor, model = potential.descriptor, potential.model
    _header(log, cfg, descriptor, model, backend, manager)
    members = members_of(model)
    if members is not None:
        seed = getattr(members[0].params, "seed", 0)
        log(f"ensemble: {len(members)} members (model seeds {seed} to {seed + len(members) - 1}), each with its "
            f"own optimiser, evaluated together (one pass over each chunk per step); their logs, checkpoints "
            f"and potential files are in {run_dir / 'members'}")
    if any(starts):
        where = "the members' checkpoints" if members else run_dir / CHECKPOINT
        log(f"resumed from {where} at iteration "
            f"{', '.join(map(str, starts))}")
    with contextlib.ExitStack() as stack:
        loss, validation = _losses(stack, potential, backend, cfg, run_dir, manager, log, progress)
        potential.training_range = loss.training_range  # saved with the potential: extrapolation checks
        interval = 0
        if validation is not None:
            interval = cfg.training.validation_interval or default_interval(len(loss.dataset),
                                                                            len(validation.dataset))
            log(f"validation: {len(validation.dataset)} images, every {interval} iteration(s)"
                + (f", patience {cfg.training.patience}" if cfg.training.patience else ""))
        if members is not None:
            _optimise_ensemble(loss, validation, interval, potential, cfg, log, run_dir, starts)
            return
        monitor = None if validation is None else Monitor(validation, interval, cfg.training.patience)
        _optimise(loss, potential, cfg, log, run_dir, starts[0], monitor)


class _Prefixed:
    """A stream that prefixes every line written to ``stream`` (a member's echoed log)."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream, self.prefix = stream, prefix

    def write(self, text: str) -> int:
        lines = text.splitlines(keepends=True)
        return self.stream.write("".join(self.prefix + line for line in lines))

    def flush(self) -> None:
        self.stream.flush()


def _optimise_ensemble(loss: LossFunction, validation: LossFunction | None, interval: int, potential: Potential,
                       cfg: Config, log: TrainLog, run_dir: Path, starts: list[int]) -> None:
    """Train each member with its own optimiser in a thread of its own, their evaluations served together
    (:mod:`amp_core.lockstep`); save the ensemble."""
    members = potential.model.members
    lockstep = Lockstep([m.vector() for m in members])
    trained: list[dict[str, Any] | None] = [None] * len(members)
    failures: list[BaseException | None] = [None] * len(members)
    config = potential.config or {}

    def run(k: int) -> None:
        folder = member_dir(run_dir, k)
        member_log = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            member_log = TrainLog(folder / "train-log.txt", None if log.echo is None else
                                  _Prefixed(log.echo, f"[member {k + 1}] "), log.every)  # type: ignore[arg-type]
            own = Potential(potential.descriptor, members[k], manager=potential.manager,
                            config=member_config(config, members[k]))
            own.training_range = potential.training_range
            monitor = None
            if validation is not None:
                monitor = Monitor(MemberLoss(lockstep, k, validation), interval, cfg.training.patience)
            _optimise(MemberLoss(lockstep, k, loss), own, cfg, member_log, folder, starts[k], monitor)  # type: ignore[arg-type]
            trained[k] = own.training
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread once every member stopped
            failures[k] = exc
            lockstep.stop(exc)  # a member that fails stops the others (each saves its checkpoint)
        finally:
            if member_log is not None:
                member_log.close()
            lockstep.leave(k)

    threads = [threading.Thread(target=run, args=(k,), name=f"amp-member-{k + 1}", daemon=True)
               for k in range(len(members))]
    for thread in threads:
        thread.start()
    try:
        lockstep.serve(lambda: any(t.is_alive() for t in threads))
    except BaseException as exc:
        lockstep.stop(exc)  # each member saves its checkpoint and stops
        for thread in threads:
            thread.join()
        raise
    for thread in threads:
        thread.join()
    for failure in failures:
        if failure is not None:
            raise failure
    outcomes = [t or {} for t in trained]
    path = run_dir / MODEL_FILE
    converged = all(bool(t.get("converged")) for t in outcomes)
    iterations = max(int(t.get("iterations", 0)) for t in outcomes)
    for k, outcome in enumerate(outcomes):
        log(f"member {k + 1}: {outcome.get('outcome', '')}")
    line = (f"{'converged' if converged else 'NOT converged'}: {sum(bool(t.get('converged')) for t in outcomes)} of "
            f"{len(members)} members converged ({lockstep.rounds} evaluation rounds served all members together); "
            f"ensemble potential saved to {path}")
    potential.training = {"converged": converged, "iterations": iterations, "outcome": line, "members": outcomes}
    potential.save(path)
    log(line)


def _optimise(loss: LossFunction, potential: Potential, cfg: Config, log: TrainLog, run_dir: Path,
              start: int, monitor: Monitor | None = None) -> None:
    model = potential.model
    t0 = time.perf_counter()
    resumed_at = model.vector()
    journal, base = _open_journal(run_dir, start, resumed_at, log)
    state: dict[str, Any] = {"iteration": base, "vector": journal.start.copy(), "converged": False,
                             "journal": journal}
    log(f"{'iter':>6} {'time/s':>9} {'loss':>12} {'E_rmse':>10} {'E_maxres':>10} {'F_rmse':>10} "
        f"{'F_maxres':>10}{Monitor.header() if monitor else ''}  criteria (* met)")

    def step(vector: NDArray[np.float64]) -> None:
        state["vector"] = np.array(vector, copy=True)  # first: an interrupt below checkpoints this iteration's
        result = loss.evaluate(vector)
        flags = met(result, cfg.training.convergence)
        state["result"] = result
        extra = ""
        if monitor is not None:
            checked = monitor.check(state["iteration"], vector) if monitor.due(state["iteration"], base) else None
            extra = monitor.columns(checked)
        log.row(state["iteration"], _row(state["iteration"], result, flags, time.perf_counter() - t0, extra))
        interval = cfg.training.checkpoint_interval
        if interval and state["iteration"] > start and state["iteration"] % interval == 0:
            model.set_vector(state["vector"])
            save_checkpoint(potential, run_dir, state["iteration"], state["journal"])
        if flags and all(flags.values()):
            raise _Converged
        if monitor is not None and monitor.exhausted():
            raise _Stopped(f"early stopping: no better validation loss in {monitor.patience} validations "
                           f"(the best was at iteration {monitor.best_iteration})")
        limit = cfg.training.max_time
        if limit is not None and time.perf_counter() - t0 >= limit:
            raise _Stopped(f"max_time {limit:g} s reached")

    def visit(vector: NDArray[np.float64]) -> None:
        """One iteration's parameters: logged and checked, or (replaying up to ``start``) only validated."""
        if state["iteration"] > start or state["iteration"] == base == start:
            step(vector)
            return
        state["vector"] = np.array(vector, copy=True)
        if monitor is not None and monitor.due(state["iteration"], base):
            monitor.check(state["iteration"], vector)  # rebuilds the best-so-far exactly
        if state["iteration"] == start and not np.array_equal(vector, resumed_at):
            raise ReplayMismatch(f"the replayed iteration {start} differs from the checkpoint's parameters")

    def callback(vector: NDArray[np.float64]) -> None:
        state["iteration"] += 1
        visit(vector)

    message = ""
    try:
        try:
            try:
                visit(state["vector"])
                message = _minimize(loss, journal, state["vector"], cfg, base, callback)
            except ReplayMismatch as mismatch:
                log(f"could not replay the optimiser's journal ({mismatch}); the optimiser restarts from the "
                    f"checkpoint's parameters, so the run will not follow the interrupted trajectory exactly")
                journal.close()
                state.update(iteration=start, vector=resumed_at.copy(), journal=_new_journal(journal.path, resumed_at, start))
                journal, base = state["journal"], start
                if monitor is not None:
                    monitor.reset()
                step(state["vector"])
                message = _minimize(loss, journal, state["vector"], cfg, start, callback)
        finally:
            log.end_rows()
    except _Converged:
        state["converged"] = True
    except _Stopped as stop:
        message = str(stop)
    except KeyboardInterrupt:
        model.set_vector(state["vector"])
        path = save_checkpoint(potential, run_dir, state["iteration"], state["journal"])
        state["journal"].close()
        log(f"interrupted at iteration {state['iteration']}; checkpoint saved to {path}; "
            "continue with 'amp train CONFIG --resume'")
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):  # e.g. the disk is full: the first failure is the one to raise
            _failed(exc, potential, run_dir, state, log)
        state["journal"].close()
        raise
    model.set_vector(state["vector"])
    save_checkpoint(potential, run_dir, state["iteration"], state["journal"])  # the last iterate, for --resume
    state["journal"].close()
    training: dict[str, Any] = {}
    best = ""
    if "result" not in state:  # every iteration was replayed
        state["result"] = loss.evaluate(state["vector"])
    if monitor is not None and monitor.best_vector is not None:
        at_best = loss.evaluate(monitor.best_vector)  # training errors of the parameters that are saved
        for line in monitor.summary(at_best, cfg.forces):
            log(line)
        model.set_vector(monitor.best_vector)  # potential.json holds the best parameters for the held-out images
        best = f" (parameters of iteration {monitor.best_iteration}, the best on the validation images)"
        training["best_validation"] = {"iteration": monitor.best_iteration,
                                       "energy_rmse": monitor.best.energy_rmse,  # type: ignore[union-attr]
                                       "force_rmse": monitor.best.force_rmse,  # type: ignore[union-attr]
                                       "training_energy_rmse": at_best.energy_rmse,
                                       "training_force_rmse": at_best.force_rmse}
    path = run_dir / MODEL_FILE
    if state["converged"]:
        line = f"converged at iteration {state['iteration']}; potential saved to {path}{best}"
    else:
        line = f"NOT converged after {state['iteration']} iterations ({message}); potential saved to {path}{best}"
    potential.training = {"converged": state["converged"], "iterations": state["iteration"], "outcome": line,
                          **training}
    potential.save(path)  # with the outcome, which load() restores
    log(line)


def _open_journal(run_dir: Path, start: int, vector: NDArray[np.float64], log: TrainLog) -> tuple[Journal, int]:
    """Return the optimiser journal and the iteration its first vector belongs to.

    A fresh run starts a journal; a resumed one reopens the journal its checkpoint names
    (the optimiser then replays from that journal's first vector up to ``start``) or, for a
    checkpoint without one, starts a journal at the checkpoint's parameters.
    """
    path = run_dir / JOURNAL
    if start:
        recorded = json.loads((run_dir / CHECKPOINT).read_text()).get("journal")
        if isinstance(recorded, dict) and recorded.get("file") == JOURNAL and type(recorded.get("records")) is int \
                and type(recorded.get("base")) is int and 0 <= recorded["base"] <= start:
            try:
                journal = Journal.reopen(path, recorded["records"])
            except RunError as exc:
                log(f"{exc}; the optimiser restarts from the checkpoint's parameters instead")
                return _new_journal(path, vector, start), start
            log(f"replaying {recorded['records']} recorded optimiser evaluations from iteration {recorded['base']} "
                f"to continue the interrupted trajectory exactly")
            journal.base = recorded["base"]
            return journal, recorded["base"]
        log("the checkpoint has no optimiser journal: the optimiser restarts from its parameters")
    return _new_journal(path, vector, start), start


def _new_journal(path: Path, vector: NDArray[np.float64], base: int) -> Journal:
    journal = Journal.create(path, vector)
    journal.base = base
    return journal


def _minimize(loss: LossFunction, journal: Journal, vector: NDArray[np.float64], cfg: Config, start: int,
              callback: Any) -> str:
    """Run the optimiser (its evaluations journalled) for the iterations left after ``start``; return why it ended."""
    remaining = cfg.maxiter - start
    if remaining <= 0:
        return f"maxiter {cfg.maxiter} reached"
    optimizer = build_optimizer(cfg, loss.manager)
    return str(optimizer.minimize(journal.wrap(loss), vector, maxiter=remaining, callback=callback))


def _failed(exc: Exception, potential: Potential, run_dir: Path, state: dict[str, Any], log: TrainLog) -> None:
    """Save the last good parameters as a checkpoint and log the failure (a worker died, a disk filled)."""
    summary = (str(exc).strip().splitlines() or [""])[0].rstrip(".")
    what = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    potential.model.set_vector(state["vector"])
    try:
        path = save_checkpoint(potential, run_dir, state["iteration"], state.get("journal"))
    except Exception as save_error:  # noqa: BLE001 - the first failure is the one to raise
        log(f"failed at iteration {state['iteration']} ({what}); the checkpoint could not be saved either "
            f"({type(save_error).__name__}: {save_error})")
        return
    log(f"failed at iteration {state['iteration']} ({what}); checkpoint of the last good parameters saved "
        f"to {path}; continue with 'amp train CONFIG --resume'")
