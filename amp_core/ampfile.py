"""Write a potential as an Amp ``.amp`` file, which the original Amp (1.0.1) opens with ``Amp.load``.

An ``.amp`` file is the text ``dict(descriptor='...', model='...')``: each value is the
``dict(key=value, ...)`` text of that object's Amp parameter dictionary (``importname``,
``version``, ``mode`` and the object's own keys). Amp evaluates the text with
``array``, ``matrix`` and ``OrderedDict`` in scope; this module writes only literals
(numbers with ``repr``, so exactly) and ``array([...])`` for arrays.

The core knows only this container. What goes inside comes from the plugins: a
descriptor or model that can be written has an ``amp_parameters()`` method (the
:class:`AmpWritable` protocol) returning Amp's parameter dictionary of its Amp
counterpart (e.g. the ``gaussian`` descriptor: Amp's ``Gaussian``; ``neuralnetwork``:
Amp's ``NeuralNetwork``). Reading goes the other way through the model entry's
``readers`` (see :class:`amp_core.FileReader`).
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from amp_core.errors import PropertyNotImplementedError


@runtime_checkable
class AmpWritable(Protocol):
    """A descriptor or model that can be written into an Amp ``.amp`` file."""

    def amp_parameters(self) -> dict[str, Any]:
        """Return Amp's parameter dictionary of this object's Amp counterpart.

        It holds ``importname`` (Amp's class, e.g. ``'.descriptor.gaussian.Gaussian'``),
        ``version``, ``mode`` and the keyword arguments Amp's class takes (``cutoff``,
        ``Gs``, ``elements``; ``hiddenlayers``, ``weights``, ...), as dicts, lists,
        tuples, numbers, strings, ``None`` and numpy arrays.
        """
        ...


def _literal(value: Any, where: str) -> str:
    """Return Python source text Amp's ``eval`` turns back into ``value`` (arrays as ``array([...])``)."""
    if isinstance(value, np.ndarray):
        return f"array({_literal(value.tolist(), where)})"
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{where} is {number}; an Amp .amp file cannot hold NaN or infinite numbers")
        return repr(number)
    if isinstance(value, dict):
        items = (f"{_literal(k, where)}: {_literal(v, f'{where}[{k!r}]')}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        parts = [_literal(v, f"{where}[{k}]") for k, v in enumerate(value)]
        if isinstance(value, tuple):
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        return "[" + ", ".join(parts) + "]"
    raise TypeError(f"{where} is a {type(value).__name__}, which an Amp .amp file cannot hold")


def _parameter_text(parameters: dict[str, Any], where: str) -> str:
    """Return ``dict(key=value, ...)`` with sorted keys, as Amp's ``Parameters.tostring`` writes it."""
    keys = sorted(parameters)
    bad = [k for k in keys if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        raise ValueError(f"{where}: keys {bad} are not keyword names")
    body = ",\n     ".join(f"{k}={_literal(parameters[k], f'{where} {k!r}')}" for k in keys)
    return f"dict({body})\n"


def _parameters(plugin: Any, kind: str) -> dict[str, Any]:
    if not isinstance(plugin, AmpWritable):
        raise PropertyNotImplementedError(
            f"{kind} {getattr(plugin, 'name', type(plugin).__name__)!r} cannot be written as an Amp .amp file: "
            "it has no amp_parameters() (no counterpart in Amp); save the potential as amp-core JSON "
            "(Potential.save) instead"
        )
    parameters = plugin.amp_parameters()
    if not isinstance(parameters, dict) or not isinstance(parameters.get("importname"), str):
        raise PropertyNotImplementedError(
            f"{kind} {plugin.name!r} returned amp_parameters() without an 'importname' (Amp's class)"  # type: ignore[attr-defined]
        )
    return parameters


def amp_text(descriptor: Any, model: Any) -> str:
    """Return the text of the ``.amp`` file of ``descriptor`` and ``model``.

    Raises:
        PropertyNotImplementedError: one of them has no ``amp_parameters()``.
        ValueError: a parameter is NaN or infinite (Amp could not read it back).
    """
    descriptor_text = _parameter_text(_parameters(descriptor, "descriptor"), "descriptor")
    model_text = _parameter_text(_parameters(model, "model"), "model")
    return f"dict(descriptor={descriptor_text!r},\n     model={model_text!r})\n"


def save_amp(descriptor: Any, model: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``descriptor`` and ``model`` as an Amp ``.amp`` file at ``path`` (atomically); return the path.

    ``amp_core.load`` reads the file back, and so does the original Amp's ``Amp.load``.

    Raises:
        PropertyNotImplementedError: a plugin without ``amp_parameters()``.
        ValueError: NaN or infinite parameters.
    """
    target = Path(path)
    text = amp_text(descriptor, model)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
