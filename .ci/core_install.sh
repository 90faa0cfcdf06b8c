#!/usr/bin/env bash
# The lean core install: a fresh virtual environment with popstore's core dependencies only (no torch,
# nflows, optuna, galpy, pyymw16, h5netcdf, dask-jobqueue) generates and splits a gaussian_fields store.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$repo"
cat > "$work/p.toml" <<'TOML'
[simulator]
name = "gaussian_fields"
[simulator.config]
npix = 16
[priors]
n_samples = 64
design = "latin_hypercube"
[store]
path = "core.zarr"
[split]
test = 0.25
valid = 0.25
[cluster]
n_workers = 2
TOML
cd "$work"
for extra in torch nflows optuna galpy pyymw16 h5netcdf dask_jobqueue; do
  if venv/bin/python -c "import $extra" 2>/dev/null; then echo "core install has $extra" >&2; exit 1; fi
done
venv/bin/popstore --version
venv/bin/popstore check p.toml
venv/bin/popstore generate p.toml -q
venv/bin/popstore info core.zarr > info.txt
grep -q "split      test 16, train 36, valid 12" info.txt
echo "core-only install: generate + split OK"
