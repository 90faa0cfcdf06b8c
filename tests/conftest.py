import logging

import pytest


@pytest.fixture(scope="session")
def client():
    """One LocalCluster (2 single-threaded worker processes) shared by the tests that need Dask."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c
