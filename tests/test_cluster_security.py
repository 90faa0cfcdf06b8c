"""Only the owner can use a popstore cluster: loopback sockets, TLS with per-run credentials, safe $VARS."""

import json
import subprocess
import sys

import pytest
from distributed import Client
from distributed.security import Security

from cluster_checks import listening, refused
from popstore.cluster import cluster_client, expand_vars
from popstore.errors import UserError

pytest.importorskip("cryptography")

# Starts a popstore LocalCluster (2 worker processes), runs a task, then lists the listening TCP sockets
# of this process and of all its children (nannies, workers).
LIST_SOCKETS = """
import json, psutil
from popstore.cluster import cluster_client
with cluster_client({"kind": "local", "n_workers": 2, "processes": True}) as c:
    assert c.submit(sum, [1, 2]).result() == 3
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    socks = [(p.pid, s.laddr.ip, s.laddr.port) for p in procs
             for s in p.net_connections(kind="inet") if s.status == psutil.CONN_LISTEN]
    print(json.dumps({"n_procs": len(procs), "sockets": socks, "dashboard": c.dashboard_link}))
"""


def test_local_cluster_listens_only_on_loopback():
    out = subprocess.run([sys.executable, "-c", LIST_SOCKETS], capture_output=True, text=True, timeout=120, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    ips = {ip for _, ip, _ in info["sockets"]}
    # this process (scheduler, dashboard, 2 nannies) and the 2 worker processes all listen somewhere
    assert len({pid for pid, _, _ in info["sockets"]}) == 3 and len(info["sockets"]) >= 6
    assert ips == {"127.0.0.1"}, info["sockets"]
    assert info["dashboard"].startswith("http://127.0.0.1:")


def test_threads_only_local_cluster_listens_only_on_loopback():
    before = listening()
    with cluster_client({"kind": "local", "n_workers": 1, "processes": False}) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        new = listening() - before
    assert len(new) >= 2 and {ip for ip, _ in new} == {"127.0.0.1"}, new  # scheduler and worker HTTP servers


def test_tls_cluster_refuses_clients_without_its_credentials():
    with cluster_client({"kind": "local", "n_workers": 1, "security": True}) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert refused(address, None)  # no credentials at all
        assert refused(address.replace("tls://", "tcp://"), None)  # plain TCP to the TLS port
        assert refused(address, Security.temporary())  # certificates of another run (another CA)
        assert not refused(address, client.cluster.security)  # the owner's credentials
        with Client(address, security=client.cluster.security, timeout="10s", set_as_default=False) as owner:
            assert owner.submit(sum, [1, 2, 3]).result() == 6


def test_expand_vars_refuses_control_characters(monkeypatch):
    monkeypatch.setenv("PROJECT", "astro42")
    monkeypatch.setenv("EVIL", "astro42\ntouch /tmp/pwned")
    assert expand_vars("acc_$PROJECT/${PROJECT}", "[cluster] account") == "acc_astro42/astro42"
    with pytest.raises(UserError, match=r"^\[cluster\] account: \$EVIL contains a newline"):
        expand_vars("$EVIL", "[cluster] account")
    with pytest.raises(UserError, match=r"\$EVIL contains"):
        expand_vars("x${EVIL}y", "[cluster] queue")
    monkeypatch.setenv("TAB", "a\tb")
    with pytest.raises(UserError, match=r"\$TAB contains"):
        expand_vars("$TAB", "[store] path")


@pytest.mark.parametrize("cfg, message", [
    ({"account": "$EVIL"}, r"\[cluster\] account: \$EVIL contains a newline"),
    ({"job_script_prologue": ["module load x\ntouch /tmp/pwned"]}, r"\[cluster\] job_script_prologue has an item"),
    ({"security": {"ca_file": "/nonexistent/ca.pem", "cert": "c", "key": "k"}}, r"\[cluster.security\] ca_file: no file"),
    ({"security": "yes"}, r"security must be true, false or a table"),
])
def test_slurm_table_refuses_unsafe_settings(monkeypatch, cfg, message):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.setenv("EVIL", "astro42\ntouch /tmp/pwned")
    with pytest.raises(UserError, match=message):
        with cluster_client({"kind": "slurm", "cores": 1, "memory": "1GB", **cfg}):
            pass


def test_slurm_cluster_defaults_to_tls_and_a_loopback_dashboard(tmp_path):
    pytest.importorskip("dask_jobqueue")
    before = listening()
    with cluster_client({"kind": "slurm", "cores": 1, "memory": "1GB", "shared_temp_directory": str(tmp_path)}) as c:
        script = c.cluster.job_script()
        assert c.scheduler.address.startswith("tls://")
        scheduler_port = int(c.scheduler.address.rsplit(":", 1)[1])
        new = listening() - before
        dumped = list(tmp_path.iterdir())  # the workers' certificate and key, for the job script
        assert len(dumped) >= 2 and all(p.stat().st_mode & 0o077 == 0 for p in dumped)
    # the scheduler listens for the worker jobs (with TLS); everything else (the dashboard) only on loopback
    assert {port for _, port in new} >= {scheduler_port} and len(new) >= 2
    assert all(ip == "127.0.0.1" for ip, port in new if port != scheduler_port), new
    assert "--tls-ca-file" in script and "--tls-key" in script
