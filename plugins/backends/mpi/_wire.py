"""What the ``mpi`` backend's messages carry: tags, and the raw layout of the loss records.

Pickled messages (tag :data:`TAG`) are small tuples whose first item is their kind. The two
that are sent every optimiser step are raw float64 buffers instead (uppercase mpi4py calls,
no pickling): the parameter vector and each rank's loss records.

They go point to point (``Isend`` to every rank, ``Recv`` after ``Iprobe``), not through
``Bcast``/``Gatherv``: a collective cannot be left once entered, so a rank that fails, or
rank 0 interrupted in the middle of a step (Ctrl-C, SIGTERM), would leave the others
waiting in it, while polled point-to-point messages let every wait notice a failure. The
gather to rank 0 is one message per rank either way (rank 0 adds every chunk's record in
chunk order, so nothing can be summed on the way); the broadcast costs rank 0 one send per
rank instead of a tree's log2(ranks) steps, which matters only for many ranks and large
parameter vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from amp_core.data import LossParts

TAG = 17
"""The tag of the backend's pickled messages (tuples whose first item is the kind)."""
VECTOR_TAG = 18
"""The tag of a parameter vector, a raw float64 buffer ``[session, vector...]``."""
LOSS_TAG = 19
"""The tag of a rank's loss records, a raw float64 buffer laid out by :func:`pack`."""
RAW_KINDS = {VECTOR_TAG: "vector", LOSS_TAG: "loss"}
"""The kind a raw message stands for, by tag (:meth:`Mpi._receive` returns ``(kind, buffer)``)."""
SCALARS = 6
"""Numbers of a loss record before its gradient (:func:`pack`)."""


def pack(parts: Sequence[LossParts], n_parameters: int) -> NDArray[np.float64]:
    """Lay out one rank's loss records for a raw send: one row per record, in the rank's chunk order.

    Returns:
        (len(parts) * width,) float64: per record ``loss, energy_loss, force_loss,
        energy_maxresid, force_maxresid, n_images``, then its gradient (n_parameters,); for an
        ensemble's records (``members``, M of them), then ``M`` and per member its six numbers
        and its number of parameters (its gradient is its slice of the record's). Every number
        is a float64 already (counts are exact), so :func:`unpack` gives them back bit for bit.
    """
    members = len(parts[0].members) if parts else 0
    width = SCALARS + n_parameters + (1 + members * (SCALARS + 1) if members else 0)
    rows = np.empty((len(parts), width), dtype=np.float64)
    for row, part in zip(rows, parts):
        row[:SCALARS] = _scalars(part)
        row[SCALARS:SCALARS + n_parameters] = part.gradient
        if members:
            tail = row[SCALARS + n_parameters:]
            tail[0] = members
            for k, member in enumerate(part.members):
                tail[1 + k * (SCALARS + 1):1 + (k + 1) * (SCALARS + 1)] = (*_scalars(member), member.gradient.size)
    return rows.reshape(-1)


def _scalars(part: LossParts) -> tuple[float, ...]:
    return (part.loss, part.energy_loss, part.force_loss, part.energy_maxresid, part.force_maxresid,
            float(part.n_images))


def _record(row: NDArray[np.float64], gradient: NDArray[np.float64], members: tuple[LossParts, ...] = ()) -> LossParts:
    return LossParts(float(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), int(row[5]),
                     gradient, members)


def unpack(buffer: NDArray[np.float64], n_parameters: int, count: int) -> list[LossParts] | None:
    """Return the ``count`` records :func:`pack` laid out (gradients are views of ``buffer``).

    Returns ``None`` when the buffer does not hold exactly that (a rank whose model has another
    parameter count, or which holds other chunks: the ranks do not run the same program).
    """
    if count == 0 or buffer.size % count:
        return [] if count == 0 and buffer.size == 0 else None
    width = buffer.size // count
    extra = width - SCALARS - n_parameters
    if extra < 0 or extra and (extra - 1) % (SCALARS + 1):
        return None
    members = (extra - 1) // (SCALARS + 1) if extra else 0
    out = []
    for row in buffer.reshape(count, width):
        gradient = row[SCALARS:SCALARS + n_parameters]
        if not members:
            out.append(_record(row, gradient))
            continue
        tail = row[SCALARS + n_parameters:]
        sizes = [int(tail[1 + k * (SCALARS + 1) + SCALARS]) for k in range(members)]
        if int(tail[0]) != members or sum(sizes) != n_parameters:
            return None
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        each = tuple(_record(tail[1 + k * (SCALARS + 1):], gradient[bounds[k]:bounds[k + 1]]) for k in range(members))
        out.append(_record(row, gradient, each))
    return out
