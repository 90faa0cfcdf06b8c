"""Driver of the SLURM training test: a 3-member flow ensemble, one task per member needing GPU=1.

    python tests/slurm/train_members.py PIPELINE.toml OUT_DIR

The pipeline file's ``[cluster]`` table makes the cluster; its workers must offer ``--resources GPU=1``.
"""

import sys
import tomllib

import numpy as np

from popstore.cluster import cluster_client
from popstore.estimators.flows import FlowConfig
from popstore.estimators.flows_ensemble import train_ensemble

SEEDS = [0, 1, 2]
CONFIG = FlowConfig(features=2, n_layers=2, hidden_features=16, batch_size=100, max_epochs=60)


def data() -> np.ndarray:
    return np.random.default_rng(0).multivariate_normal([10.0, -3.0], [[4.0, 1.2], [1.2, 1.0]], size=2000)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        cluster = tomllib.load(f)["cluster"]
    with cluster_client(cluster) as client:
        results = train_ensemble(data(), CONFIG, SEEDS, sys.argv[2], client=client, resources={"GPU": 1})
    print("trained", [r.seed for r in results])
