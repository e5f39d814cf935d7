#!/bin/bash
# amp-core on SLURM: 2 nodes x 32 ranks, one rank per core, 2 GB per rank.
# Submit from the folder that holds config.toml:  sbatch slurm.sh
#SBATCH --job-name=amp-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=32
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=2G
#SBATCH --time=04:00:00
#SBATCH --output=amp-%j.out
set -euo pipefail

# The site's MPI, and mpi4py built against it (not the mpich wheel):
#   module load openmpi            # or mpich, intel-mpi, cray-mpich ...
#   python -m venv ~/amp && source ~/amp/bin/activate
#   MPICC=mpicc pip install --no-binary=mpi4py mpi4py && pip install /path/to/amp-core
module load openmpi 2>/dev/null || true
source ~/amp/bin/activate

# One thread per rank: the ranks are the parallelism (numpy's BLAS would oversubscribe).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

# srun starts one rank per task; rank 0 writes train-log.txt, checkpoints and the potential
# into the run directory of config.toml, which must be on the shared file system.
srun amp train config.toml --log-every 10
# Resume after a time limit or a failure:  srun amp train config.toml --resume
