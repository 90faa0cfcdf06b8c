"""Peak memory of CBE accelerations stays bounded by the memory budget as an ensemble grows.

Each case runs in a fresh subprocess that resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``) after building the models, so ``VmHWM - VmRSS``
is the memory the acceleration call itself added.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")

SCRIPT = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from popstore.estimators.flows import FlowConfig, ScaledFlow
from popstore.estimators.flows_ensemble import FlowEnsemble, phase_space_log_df
from popstore.galaxy.dynamics.acceleration import cbe_acceleration, graph_bytes_per_point

def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))

k, budget = int(sys.argv[1]), float(sys.argv[2])
torch.manual_seed(0)
ens = FlowEnsemble([ScaledFlow(FlowConfig(n_layers=4, hidden_features=32), np.zeros(6), np.ones(6)) for _ in range(k)]).double()
log_f = phase_space_log_df(ens)
g = torch.Generator().manual_seed(1)
x = torch.randn(10, 3, generator=g, dtype=torch.float64)
v = torch.randn(10, 300, 3, generator=g, dtype=torch.float64)
cbe_acceleration(log_f, x[:1], v[:1, :3])  # warm-up: lazy allocations of torch
graph = graph_bytes_per_point(log_f, x[:, None].expand(10, 300, 3).reshape(-1, 3), v.reshape(-1, 3)) * v.shape[0] * v.shape[1]
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
acc = cbe_acceleration(log_f, x, v, memory_budget=budget)
print(json.dumps({"added": status("VmHWM") - before, "unchunked_graph": graph, "finite": bool(torch.isfinite(acc).all())}))
"""


def _peak(k: int, budget: float) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(k), str(budget)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cbe_peak_memory_is_bounded_as_the_ensemble_grows():
    """3,000 points: the unchunked graph grows 6x from 2 to 12 members (to ~700 MB); the call's peak stays < 3 budgets.

    What remains of the growth with K is per-member overhead of each chunk (masked weights, the probe of
    :func:`graph_bytes_per_point`), a few percent of the graph that chunking avoids.
    """
    budget = 16e6
    small, large = _peak(2, budget), _peak(12, budget)
    assert small["finite"] and large["finite"]
    assert large["unchunked_graph"] > 5.9 * small["unchunked_graph"] > 40 * budget  # without chunks: > 40 budgets
    for r in (small, large):
        assert r["added"] < 3 * budget
    assert large["added"] < 0.1 * large["unchunked_graph"]
    assert large["added"] / small["added"] < 3  # the graph grew 6x
