"""Every backend gives serial's fingerprints, loss and gradient (amp_core.testing.check_backend)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from amp_core import Potential, create_backend, create_descriptor, create_model, evaluate_loss
from amp_core.testing import check_backend, labelled_structures

needs_fortran = pytest.mark.skipif(
    shutil.which("gfortran") is None and not os.environ.get("AMP_REQUIRE_FORTRAN"),
    reason="no Fortran compiler: the fortran backend is unavailable",
)


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_multiprocessing_matches_serial(cores):
    with create_backend("multiprocessing", cores=cores) as backend:
        check_backend(backend)


@needs_fortran
@pytest.mark.parametrize("cores", [1, 2])
def test_fortran_matches_serial(cores):
    with create_backend("fortran", cores=cores) as backend:
        check_backend(backend)
        check_backend(backend, force_coefficient=None)


def test_more_workers_than_images():
    images = labelled_structures()[:2]
    with create_backend("multiprocessing", cores=3) as backend:
        check_backend(backend, images=images)


@needs_fortran
def test_plugins_without_kernels_run_under_fortran_with_a_notice():
    potential = Potential(create_descriptor("none"), create_model("pairpotential", cutoff=4.5))
    lines = []
    with create_backend("fortran", cores=2) as backend:
        result = evaluate_loss(labelled_structures(), potential, backend, force_coefficient=0.04, log=lines.append)
        check_backend(backend, potential=potential)
    assert any("'pairpotential' has no compiled kernel" in line for line in lines)
    reference = evaluate_loss(labelled_structures(), potential, force_coefficient=0.04)
    assert result.loss == pytest.approx(reference.loss, rel=1e-12)


@needs_fortran
def test_fortran_run_logs_the_kernels_it_loaded():
    from amp_core.compiled import wide_vectors

    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]), create_model("neuralnetwork"))
    lines = []
    with create_backend("fortran", cores=1) as backend:
        evaluate_loss(labelled_structures()[:3], potential, backend, force_coefficient=0.04, log=lines.append)
    (line,) = [line for line in lines if line.startswith("compiled kernels loaded")]
    suffix = "_x86_64_v3" if wide_vectors() else ""
    for stem in ("gaussian_kernels", "neuralnetwork_kernels"):
        assert f"{stem}{suffix}." in line


def test_check_backend_catches_a_wrong_backend():
    class Wrong:
        """Serial, but drops the last shard's gradient."""

        name, cores, compiled = "wrong", 2, False

        def __init__(self):
            self.inner = create_backend("serial")

        def map(self, function, tasks, *, stage, progress=None):
            return self.inner.map(function, tasks, stage=stage, progress=progress)

        def start(self, model, shard_dirs, settings):
            session = self.inner.start(model, shard_dirs, settings)

            class Broken:
                def evaluate(self, vector):
                    parts = session.evaluate(vector)
                    parts[-1].gradient = np.zeros_like(parts[-1].gradient)
                    return parts

                def close(self):
                    session.close()

            return Broken()

        def close(self):
            pass

    with pytest.raises(AssertionError, match="gradient at vector 0 differs from serial"):
        check_backend(Wrong())
