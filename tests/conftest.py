import logging

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread in every test: the 2 test cores are shared with Dask workers, and oversubscribed
    torch threads slow training several-fold."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def client():
    """One LocalCluster (2 single-threaded worker processes) shared by the tests that need Dask."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c
