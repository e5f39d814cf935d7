#!/bin/bash
# amp-core on PBS Pro / OpenPBS: 2 nodes x 32 ranks, one rank per core, 64 GB per node.
# Submit from the folder that holds config.toml:  qsub pbs.sh
#PBS -N amp-train
#PBS -l select=2:ncpus=32:mpiprocs=32:mem=64gb
#PBS -l walltime=04:00:00
#PBS -j oe
set -euo pipefail
cd "$PBS_O_WORKDIR"

# The site's MPI and an mpi4py built against it (see slurm.sh for the one-time setup).
module load mpt 2>/dev/null || module load openmpi 2>/dev/null || true
source ~/amp/bin/activate
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

# mpiexec reads the node list from PBS_NODEFILE (MPICH, Open MPI, MPT and Intel MPI all do).
mpiexec -n "$(wc -l < "$PBS_NODEFILE")" amp train config.toml --log-every 10
