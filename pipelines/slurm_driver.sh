#!/bin/bash
# Driver job for a popstore pipeline on SLURM: it schedules, dask-jobqueue submits the worker jobs.
#   sbatch pipelines/slurm_driver.sh pipelines/pulsar_full_slurm.toml [more popstore generate options, e.g. -q]
# Resubmitting the same script after a failure resumes the store (finished chunks are skipped).
#SBATCH --job-name=popstore-driver
#SBATCH --time=24:00:00
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
set -euo pipefail
source "${POPSTORE_VENV:-$HOME/popstore/.venv}/bin/activate"
popstore generate "$@"
