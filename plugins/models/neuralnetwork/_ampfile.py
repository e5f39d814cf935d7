"""Read Amp's ``.amp`` model files (Gaussian descriptor + neural network), safely.

An ``.amp`` file is ASE's ``Parameters.tostring()`` of ``{'descriptor': ..., 'model': ...}``:
the text ``dict(descriptor='...', model='...')``, where each value is itself the
``dict(...)`` text of that object's parameters (``importname``, ``version``, ``mode``
and, for the descriptor, ``cutoff``, ``Gs``, ``elements``; for the model,
``hiddenlayers``, ``activation``, ``weights``, ``scalings``, ``fprange``). Weights may
appear as ``array([[...]])``, ``matrix(...)``, nested lists or ``OrderedDict([...])``.

The text is parsed with :mod:`ast` and only literals and a short list of constructor
calls of literals are accepted; nothing is ever evaluated or unpickled.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amp_core.errors import ModelFileError

DESCRIPTOR_IMPORTNAME = ".descriptor.gaussian.Gaussian"
MODEL_IMPORTNAME = ".model.neuralnetwork.NeuralNetwork"
DESCRIPTORS = {
    DESCRIPTOR_IMPORTNAME: "gaussian",
    ".descriptor.zernike.Zernike": "zernike",
    ".descriptor.bispectrum.Bispectrum": "bispectrum",
}
"""Amp's descriptor classes -> the amp-core descriptor plugins that compute the same fingerprints."""
_ORDER_KEYS = {"zernike": "nmax", "bispectrum": "jmax"}
_VERSIONS = ("2015.12", "2016.02")
_NAMES = {"nan": float("nan"), "inf": float("inf"), "True": True, "False": False, "None": None}


def _as_list(*args: Any, **kwargs: Any) -> Any:
    if len(args) != 1:
        raise ValueError("expected exactly one argument")
    return args[0]


def _as_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    if len(args) > 1:
        raise ValueError("expected at most one argument")
    out = dict(args[0]) if args else {}
    out.update(kwargs)
    return out


def _as_float(*args: Any, **kwargs: Any) -> float:
    if len(args) != 1 or kwargs:
        raise ValueError("expected exactly one argument")
    return float(args[0])


# Calls a repr may contain; each maps to a harmless builder of plain Python values.
_CALLS: dict[str, Callable[..., Any]] = {
    "array": _as_list,
    "matrix": _as_list,
    "dict": _as_dict,
    "OrderedDict": _as_dict,
    "float64": _as_float,
    "float": _as_float,
}
_MODULES = ("np", "numpy", "collections")
_DTYPES = ("float", "float64", "np.float64", "numpy.float64")


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in _MODULES:
        return func.attr
    raise ValueError(f"call of {ast.unparse(func)!r} is not allowed")


def _literal(node: ast.AST) -> Any:
    """Return the value of ``node`` if it is a literal or an allowed constructor call."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("sign applied to a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("'**' in a dict is not allowed")
        return {_hashable(_literal(k)): _literal(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Call):
        name = _call_name(node.func)
        if name not in _CALLS:
            raise ValueError(f"call of {name!r} is not allowed")
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("'**' in a call is not allowed")
            if kw.arg == "dtype" and name in ("array", "matrix"):
                if ast.unparse(kw.value) not in _DTYPES:
                    raise ValueError(f"dtype {ast.unparse(kw.value)} is not allowed")
                continue
            kwargs[kw.arg] = _literal(kw.value)
        return _CALLS[name](*[_literal(a) for a in node.args], **kwargs)
    raise ValueError(f"{type(node).__name__} expression {ast.unparse(node)[:60]!r} is not allowed")  # type: ignore[arg-type]


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def parse_text(text: str) -> Any:
    """Parse a Python literal text (Amp's ``repr`` output) without evaluating code.

    Raises:
        ValueError: a syntax error or an expression that is not a literal.
    """
    tree = ast.parse(text.strip(), mode="eval")
    return _literal(tree.body)


def _section(document: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    if key not in document:
        raise ModelFileError(f"{path}: no {key!r} entry; an Amp .amp file has 'descriptor' and 'model'")
    value = document[key]
    if isinstance(value, str):
        try:
            value = parse_text(value)
        except (SyntaxError, ValueError, TypeError) as exc:
            raise ModelFileError(
                f"{path}: the {key!r} entry is not a readable parameter dict: {exc}"
            ) from exc
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: the {key!r} entry must be a dict, got {type(value).__name__}")
    return value


def _check_kind(section: dict[str, Any], key: str, importnames: tuple[str, ...], path: str) -> None:
    found = section.get("importname")
    if found not in importnames:
        raise ModelFileError(
            f"{path}: {key} is {found!r}; only Amp's Gaussian, Zernike and Bispectrum descriptors with its "
            f"NeuralNetwork model ({', '.join(map(repr, DESCRIPTORS))}, {MODEL_IMPORTNAME!r}) can be imported"
        )
    version = section.get("version")
    if version is not None and version not in _VERSIONS:
        raise ModelFileError(
            f"{path}: {key} version {version!r} is not supported (known: {', '.join(_VERSIONS)})"
        )
    mode = section.get("mode")
    if mode not in (None, "atom-centered"):
        raise ModelFileError(f"{path}: {key} mode {mode!r}; only 'atom-centered' models can be imported")


def _descriptor_kwargs(section: dict[str, Any], path: str, name: str = "gaussian") -> dict[str, Any]:
    gs = section.get("Gs")
    elements = section.get("elements")
    if name != "gaussian":  # zernike / bispectrum: per-element weights as Amp wrote them, the order, cutoff
        if gs is None and not elements:
            raise ModelFileError(f"{path}: the {name} descriptor has neither 'Gs' (weights) nor 'elements'")
        kwargs: dict[str, Any] = {"Gs": gs, "elements": sorted(elements) if elements else None}
        for key in ("cutoff", _ORDER_KEYS[name]):
            if key in section:
                kwargs[key] = section[key]
        return kwargs
    if gs is None:
        if not elements:
            raise ModelFileError(f"{path}: the descriptor has neither 'Gs' (symmetry functions) nor 'elements'")
        # Saved before first use: Amp then builds its default set for the sorted elements.
        kwargs = {"elements": sorted(elements), "preset": "amp"}
        if "cutoff" in section:
            kwargs["cutoff"] = section["cutoff"]
        return kwargs
    if isinstance(gs, list):
        if not elements:
            raise ModelFileError(f"{path}: 'Gs' is a list but the descriptor names no 'elements'")
        gs = {el: gs for el in elements}
    kwargs = {"Gs": gs, "elements": sorted(elements) if elements else sorted(gs)}
    if "cutoff" in section:
        kwargs["cutoff"] = section["cutoff"]
    return kwargs


def _model_kwargs(section: dict[str, Any], path: str) -> dict[str, Any]:
    missing = [k for k in ("weights", "scalings", "fprange") if section.get(k) is None]
    if missing:
        raise ModelFileError(
            f"{path}: the model has no {', '.join(missing)}; only trained models can be imported"
        )
    kwargs = {k: section[k] for k in ("weights", "scalings", "fprange")}
    kwargs["activation"] = section.get("activation", "tanh")
    if section.get("hiddenlayers") is not None:
        kwargs["hiddenlayers"] = section["hiddenlayers"]
    else:
        kwargs["hiddenlayers"] = {
            el: [len(w[k][0]) for k in sorted(w)[:-1]] for el, w in section["weights"].items()
        }
    return kwargs


def accepts(text: str) -> bool:
    """Whether ``text`` looks like an Amp ``.amp`` file (``dict(...)`` parameter text)."""
    return text.lstrip().startswith("dict(")


def read_amp_text(text: str, where: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Read the text of an Amp ``.amp`` file of a Gaussian descriptor and a neural network.

    Args:
        text: the file's content.
        where: the file name, for messages.

    Returns:
        ``("gaussian", descriptor_kwargs, model_kwargs)``: keyword arguments for
        ``create_descriptor('gaussian', **descriptor_kwargs)`` (``cutoff``, ``Gs``,
        ``elements``) and ``create_model('neuralnetwork', **model_kwargs)``
        (``hiddenlayers``, ``activation``, ``weights``, ``scalings``, ``fprange``).

    Raises:
        ModelFileError: the text is not a literal parameter dict, is not a Gaussian +
            NeuralNetwork model, or lacks trained parameters.
    """
    try:
        document = parse_text(text)
    except (SyntaxError, ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(
            f"{where}: not an Amp .amp file (expected the text 'dict(descriptor=..., model=...)'): {exc}"
        ) from exc
    if not isinstance(document, dict):
        raise ModelFileError(
            f"{where}: not an Amp .amp file (the text is a {type(document).__name__}, not a dict)"
        )
    descriptor = _section(document, "descriptor", where)
    model = _section(document, "model", where)
    _check_kind(descriptor, "descriptor", tuple(DESCRIPTORS), where)
    _check_kind(model, "model", (MODEL_IMPORTNAME,), where)
    name = DESCRIPTORS[descriptor["importname"]]
    return name, _descriptor_kwargs(descriptor, where, name), _model_kwargs(model, where)


def read_amp_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an Amp ``.amp`` file; return ``(descriptor_kwargs, model_kwargs)`` (see :func:`read_amp_text`).

    Raises:
        ModelFileError: the file cannot be read or is not an Amp Gaussian + NeuralNetwork model.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{name}: cannot read the Amp model file: {exc}") from exc
    _, descriptor_kwargs, model_kwargs = read_amp_text(text, name)
    return descriptor_kwargs, model_kwargs
