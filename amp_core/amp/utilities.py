"""Amp's ``amp.utilities`` names that scripts catch or use: :class:`TrainingConvergenceError`."""

from __future__ import annotations

from amp_core.errors import AmpError


class TrainingConvergenceError(AmpError, RuntimeError):
    """Raised by :meth:`amp_core.amp.Amp.train` when training ends without converging, as Amp raises it.

    Amp 1.0.1 raises it when its optimiser stops by itself (e.g. SciPy's BFGS gives up)
    before the convergence criteria are met; the parameters reached are saved first as
    ``<label>-untrained-parameters.amp``. Reaching ``LossFunction(maxiter=...)`` counts
    as finished in Amp 1.0.1 (``<label>.amp`` is written, nothing is raised), and so it
    does here.
    """
