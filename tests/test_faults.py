"""Faults a new user can cause, each reproduced and checked: nothing lost, nothing silently wrong.

Store: damaged chunks (truncated, flipped byte, deleted) are errors naming the chunk, found by
``verify`` and repaired to a bit-identical store; non-finite outputs fail their sample; a worker
that dies costs its own block only; an interrupted creation leaves no half store; one writer at a
time. Bad input (priors, splits, CSV catalogues, legacy folders, exports, checkpoints) is refused
with one line before any work starts.
"""

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import zarr

import popstore
from popstore.codecs import CorruptChunkError, check_blosc_frame
from popstore.errors import UserError
from popstore.lock import StoreLock, StoreLockedError, lock_path
from popstore.priors import sample_table
from popstore.simulator import Parameter
from popstore.store import open_store, temporary_path
from popstore.verify import verify
from toy_simulators import BatchRamp, Ramp

N, CHUNK, SEED = 24, 3, 7
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def table():
    return sample_table(Ramp().parameters, N, seed=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, table, client):
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    # lz4, not "auto" (raw for these noise maps): the damage tests below exercise the Blosc frame checks too
    report = popstore.generate(Ramp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, compression="lz4",
                               progress=False)
    assert report.complete
    return path


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def chunk_files(path: Path) -> dict[str, bytes]:
    """Every file but the root metadata (whose attrs hold the creation time)."""
    return {k: v for k, v in files(path).items() if k != "zarr.json"}


def copy(reference: Path, tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    shutil.copytree(reference, path)
    return path


def regenerate(path, table, client, sim=None):
    return popstore.generate(sim or Ramp(), table, path, client, seed=SEED, samples_per_chunk=CHUNK, compression="lz4",
                             progress=False)


# --- damaged chunks ----------------------------------------------------------------------------

def test_every_array_is_checksummed_after_compression(reference):
    for meta in reference.rglob("zarr.json"):
        codecs = json.loads(meta.read_text()).get("codecs")
        if codecs is not None:
            assert codecs[-1]["name"] == "crc32c", meta  # last on write = first checked on read


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_chunk_is_found_by_verify_and_repaired_bit_identical(damage, reference, table, tmp_path, client):
    path = copy(reference, tmp_path)
    key = "image/c/3/0/0/0"  # samples 9-11
    chunk = path / key
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(chunk.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        raw[len(raw) // 3] ^= 0x01
        chunk.write_bytes(bytes(raw))
    else:
        chunk.unlink()
    if damage != "delete":
        with pytest.raises(CorruptChunkError, match="image/c/3/0/0/0"):
            open_store(path)["image"].values
        with pytest.raises(CorruptChunkError, match="image/c/3/0/0/0"):
            popstore.MapDataset(path, inputs=["image"], split=None)[10]
    report = verify(path)
    assert not report.ok
    assert report.problems[["variable", "chunk", "samples"]].values.tolist() == [["image", key, "9-11"]]
    assert report.problems["problem"].iloc[0].startswith({"truncate": "corrupt", "flip": "corrupt",
                                                          "delete": "missing"}[damage])
    repaired = verify(path, repair=True)
    assert repaired.repaired_blocks == [3]
    assert open_store(path)["done"].values.sum() == N - CHUNK
    rerun = regenerate(path, table, client)
    assert rerun.complete and rerun.n_written == CHUNK and rerun.n_skipped == N - CHUNK
    assert verify(path).ok
    assert files(path) == files(reference)  # every byte of every file


def test_resume_notices_a_deleted_chunk_of_done_samples(reference, table, tmp_path, client, caplog):
    path = copy(reference, tmp_path)
    (path / "image/c/5/0/0/0").unlink()
    with caplog.at_level(logging.WARNING, logger="popstore.generate"):
        report = regenerate(path, table, client)
    assert report.n_written == CHUNK and "blocks [5] are marked done but have missing chunks" in caplog.text
    assert files(path) == files(reference)


def test_damaged_label_and_done_chunks_are_repaired(reference, table, tmp_path, client):
    path = copy(reference, tmp_path)
    for key in ("a/c/1", "done/c/6"):
        raw = bytearray((path / key).read_bytes())
        raw[0] ^= 0x10
        (path / key).write_bytes(bytes(raw))
    with pytest.raises(CorruptChunkError, match="done/c/6.*verify .* --repair"):
        regenerate(path, table, client)
    report = verify(path, repair=True)
    assert sorted(report.problems["chunk"]) == ["a/c/1", "done/c/6"] and report.repaired_blocks == [1, 6]
    assert regenerate(path, table, client).n_written == 2 * CHUNK
    assert files(path) == files(reference)


def test_non_finite_values_in_done_samples_are_found_by_verify(reference, table, tmp_path, client):
    path = copy(reference, tmp_path)
    image = zarr.open_array(path / "image", mode="r+")
    image[4, 0, 0, 0] = np.inf  # written through zarr: a valid checksum over a wrong value
    report = verify(path, repair=True)
    assert report.problems["problem"].tolist() == ["non-finite in done samples [4]"]
    assert report.repaired_blocks == [1]
    regenerate(path, table, client)
    assert files(path) == files(reference)


def test_store_without_checksums_still_opens_and_is_checked(reference, tmp_path):
    """A store written before checksums: same data, codecs without crc32c; reads and verify still work."""
    old = tmp_path / "old.zarr"
    src = zarr.open_group(reference, mode="r")
    dst = zarr.open_group(old, mode="w", zarr_format=3, attributes=dict(src.attrs))
    for name, arr in src.arrays():
        compressors = [c for c in arr.compressors if type(c).__name__ != "Crc32cCodec"]
        new = dst.create_array(name, shape=arr.shape, chunks=arr.chunks, dtype=arr.dtype, compressors=compressors,
                               fill_value=arr.fill_value, dimension_names=arr.metadata.dimension_names,
                               attributes=dict(arr.attrs))
        new[...] = arr[...]
    assert "crc32c" not in (old / "image/zarr.json").read_text()
    np.testing.assert_array_equal(open_store(old)["image"].values, open_store(reference)["image"].values)
    assert verify(old).ok
    (old / "image/c/2/0/0/0").write_bytes((old / "image/c/2/0/0/0").read_bytes()[:40])
    assert verify(old).problems["problem"].iloc[0].startswith("corrupt: blosc header claims")


SEGFAULT_SCRIPT = """
import numpy as np, zarr, sys
import popstore.codecs  # registers the guarded Blosc decoder (as every popstore module that reads stores does)
from zarr.codecs import BloscCodec
path = sys.argv[1]
# incompressible data: Blosc stores the frame uncompressed (MEMCPYED), the case numcodecs decodes unchecked
a = zarr.create_array(path, shape=(16_000_000,), chunks=(16_000_000,), dtype="uint32",
                      compressors=(BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),))
a[:] = np.random.default_rng(0).integers(0, 2**32, size=a.shape, dtype=np.uint32)
chunk = path + "/c/0"
raw = open(chunk, "rb").read()
open(chunk, "wb").write(raw[: len(raw) // 2])
try:
    zarr.open_array(path)[:]
except Exception as err:
    print(type(err).__name__, err)
"""


def test_truncated_uncompressed_blosc_frame_is_an_error_not_a_segfault(tmp_path):
    """numcodecs 0.16's Blosc copies a MEMCPYED frame's claimed size past a truncated buffer's end: this very
    script without ``import popstore.codecs`` dies with SIGSEGV (exit 139) on a 64 MB chunk, and returns silently
    wrong numbers on an 8 MB one; with popstore's frame check it is a CorruptChunkError naming the chunk."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", SEGFAULT_SCRIPT, str(tmp_path / "a.zarr")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("CorruptChunkError") and "blosc header claims 64000016 bytes" in out.stdout


def test_blosc_frame_check_rejects_random_damage_before_decoding():
    from numcodecs import Blosc

    rng = np.random.default_rng(5)
    data = (np.random.default_rng(0).normal(size=(8, 32, 32)) * 10).astype(np.float32).round(1)
    for codec in (Blosc(cname="lz4", clevel=5, shuffle=1), Blosc(cname="zstd", clevel=5, shuffle=2)):
        frame = np.frombuffer(bytes(codec.encode(data)), dtype=np.uint8)
        check_blosc_frame(frame.tobytes(), data.nbytes)
        for cut in rng.integers(0, len(frame), 50):
            with pytest.raises(ValueError, match="blosc"):
                check_blosc_frame(frame[:cut].tobytes(), data.nbytes)
        lying = frame.copy()
        lying[4:8] = np.frombuffer(np.uint32(data.nbytes * 4).tobytes(), np.uint8)  # nbytes says 4x the chunk
        with pytest.raises(ValueError, match="decodes to"):
            check_blosc_frame(lying.tobytes(), data.nbytes)


# --- samples that go wrong -------------------------------------------------------------------

@pytest.mark.parametrize("sim_class", [Ramp, BatchRamp])
def test_non_finite_outputs_fail_their_sample(sim_class, table, reference, tmp_path, client):
    threshold = float(np.sort(table["a"].values)[-3])  # the two largest values of a return NaN
    path = tmp_path / "s.zarr"
    report = regenerate(path, table, client, sim_class(nan_above=threshold))
    bad = np.flatnonzero(table["a"].values > threshold)
    assert report.failed["sample"].tolist() == bad.tolist()
    assert report.failed["error"].str.contains(r"non-finite values \(NaN or inf\) in outputs \['image'\]").all()
    done = open_store(path)["done"].values
    np.testing.assert_array_equal(done, ~np.isin(np.arange(N), bad))
    assert regenerate(path, table, client).n_written == 2
    assert chunk_files(path) == chunk_files(reference)


def test_worker_that_always_dies_costs_its_own_block_only(table, reference, tmp_path, client, monkeypatch):
    crash = 13  # block 4 (samples 12-14) kills every worker that runs it
    path = tmp_path / "s.zarr"
    # the first death is final for the block (not the 4th): two worker restarts instead of eight, each a chance
    # for a loaded machine to lose the nanny's restart race and leave the cluster without workers
    monkeypatch.setattr(client.cluster.scheduler, "allowed_failures", 0)
    report = regenerate(path, table, client, Ramp(crash_a=float(table["a"].iloc[crash])))
    assert report.failed["sample"].tolist() == [12, 13, 14]
    assert report.failed["seed"].tolist() == open_store(reference)["seed"].values[12:15].tolist()
    assert report.failed["error"].str.contains("KilledWorker").all()
    assert report.n_written == N - CHUNK
    done = open_store(path)["done"].values
    assert done.sum() == N - CHUNK and not done[12:15].any()
    assert regenerate(path, table, client).n_written == CHUNK
    assert chunk_files(path) == chunk_files(reference)


def test_a_block_that_dies_beside_a_crashing_one_is_rerun_alone(table, reference, tmp_path):
    """One worker of two threads: the block that kills its worker takes the block running beside it down (one
    death fails a task here: allowed-failures 0); that bystander is then rerun alone and written, and only the
    crashing block fails."""
    from distributed import Client, LocalCluster

    crash = 1  # block 0 (samples 0-2)
    path = tmp_path / "s.zarr"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        report = popstore.generate(Ramp(crash_a=float(table["a"].iloc[crash]), delay=0.2), table.iloc[:6], path, c,
                                   seed=SEED, samples_per_chunk=CHUNK, progress=False)
    assert report.failed["sample"].tolist() == [0, 1, 2] and report.n_written == 3
    np.testing.assert_array_equal(open_store(path)["image"].values[3:6], open_store(reference)["image"].values[3:6])


# --- creation and writers ----------------------------------------------------------------------

def test_interrupted_creation_leaves_no_store_and_is_cleaned(table, reference, tmp_path, client, monkeypatch):
    from zarr.storage import LocalStore

    path = tmp_path / "s.zarr"
    real_set = LocalStore.set

    async def disk_full_on_a_second_chunk(self, key, value):
        if key.endswith("/c/1"):  # the second chunk of the first multi-chunk array written
            raise OSError(28, "No space left on device")
        if "/c/" in key:  # its sibling chunks are still being written when it fails
            await asyncio.sleep(0.3)
        return await real_set(self, key, value)

    monkeypatch.setattr(LocalStore, "set", disk_full_on_a_second_chunk)
    with pytest.raises(OSError, match="No space left"):
        regenerate(path, table, client)
    monkeypatch.undo()
    assert not path.exists() and not temporary_path(path).exists() and not lock_path(path).exists()
    # a creation killed outright leaves its temporary behind: the next run removes it
    temporary_path(path).mkdir()
    (temporary_path(path) / "zarr.json").write_text("{}")
    assert regenerate(path, table, client).complete
    assert not temporary_path(path).exists()
    assert chunk_files(path) == chunk_files(reference)


def test_second_writer_is_refused_with_the_holder_named(table, tmp_path, client):
    path = tmp_path / "s.zarr"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(path).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "started": "t0"}))
        with pytest.raises(StoreLockedError, match=f"being written by pid {holder.pid} on host "
                                                   f"{socket.gethostname()} since t0"):
            regenerate(path, table, client)
        assert not path.exists()
    finally:
        holder.kill()
        holder.wait()


def test_stale_locks_are_taken_over_with_a_warning(table, tmp_path, caplog):
    path = tmp_path / "s.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(path).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    with caplog.at_level(logging.WARNING, logger="popstore.lock"), StoreLock(path):
        assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    assert f"process {dead.pid} on this host no longer exists" in caplog.text
    assert not lock_path(path).exists()
    # a holder on another host: refused while fresh, taken over once older than stale_after
    lock_path(path).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(StoreLockedError, match="on host elsewhere"):
        StoreLock(path, stale_after=60).acquire()
    old = time.time() - 120
    os.utime(lock_path(path), (old, old))
    with StoreLock(path, stale_after=60):
        pass
    assert "last refreshed 1" in caplog.text


def small_pipeline(tmp_path: Path, extra: str = "") -> Path:
    """A gaussian_fields pipeline file of 8 tiny samples in ``tmp_path`` (store ``s.zarr``), plus ``extra`` TOML."""
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(textwrap.dedent("""
        [simulator]
        name = "gaussian_fields"
        [simulator.config]
        npix = 8
        [priors]
        n_samples = 8
        [store]
        path = "s.zarr"
        samples_per_chunk = 4
    """) + textwrap.dedent(extra))
    return pipeline


def test_two_generate_processes_one_refused_with_one_line(tmp_path):
    pipeline = small_pipeline(tmp_path, """
        [cluster]
        kind = "local"
        n_workers = 1
        processes = false
    """)
    lock_path(tmp_path / "s.zarr").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                         "started": "now"}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-m", "popstore.cli", "generate", str(pipeline), "-q"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"popstore generate: error: {tmp_path / 's.zarr'} is being written by pid {os.getpid()} on host "
        f"{socket.gethostname()} since now (lock file {lock_path(tmp_path / 's.zarr')}); wait for it, or delete "
        "the lock file if that process is gone"]


RACE_SCRIPT = """
import sys, pandas as pd, popstore
from popstore.lock import StoreLockedError
from toy_simulators import Ramp
if __name__ == "__main__":
    try:
        report = popstore.generate(Ramp(delay=0.2), pd.read_csv(sys.argv[1]), sys.argv[2], seed=7,
                                   samples_per_chunk=3, compression="lz4", progress=False)
    except StoreLockedError as err:
        print("locked:", err)
        sys.exit(2)
    print("written", report.n_written)
"""


def test_two_writers_started_together_one_writes_one_is_refused(table, reference, tmp_path):
    table.to_csv(tmp_path / "table.csv", index=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, str(tmp_path / "table.csv"), str(tmp_path / "s.zarr")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    stdout = sorted(o[0].strip() for o in outs)
    assert stdout[0].startswith("locked:") and "is being written by pid" in stdout[0]
    assert stdout[1] == f"written {N}"
    assert chunk_files(tmp_path / "s.zarr") == chunk_files(reference)
    assert not lock_path(tmp_path / "s.zarr").exists()


def test_verify_command_prints_the_table_and_exit_status(reference, tmp_path, capsys):
    from popstore.cli import main

    path = copy(reference, tmp_path)
    assert main(["verify", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith("chunks checked, no problems")
    (path / "n_bright/c/2").unlink()
    assert main(["verify", str(path), "--repair"]) == 1
    out = capsys.readouterr().out
    assert "n_bright n_bright/c/2 6-8 missing True" in " ".join(out.split())
    assert "1 problems" in out and "done cleared for blocks [2]" in out


# --- priors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, what", [(np.inf, "is not a finite number"), (np.nan, "is not a finite number"),
                                         (1.5, r"lies outside the prior \[0.0, 1.0\]")])
def test_parameter_values_are_checked_against_the_prior_before_anything_runs(value, what, table, tmp_path):
    bad = table.copy()
    bad.loc[5, "a"] = value
    with pytest.raises(UserError, match=f"parameter 'a': 1 values, first row 5 = {value}, {what}"):
        popstore.generate(Ramp(), bad, tmp_path / "s.zarr", client=object(), progress=False)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("bounds, what", [((0.0, np.inf), "finite"), ((np.nan, 0.5), "finite"),
                                          ((0.5, 0.2), "low < high"), ((-1.0, 0.5), "wider than its prior")])
def test_ranges_must_lie_inside_the_prior(bounds, what):
    with pytest.raises(UserError, match=what):
        sample_table(Ramp().parameters, 10, seed=0, ranges={"a": bounds})


def test_a_prior_must_be_finite():
    with pytest.raises(ValueError, match="must be finite"):
        Parameter("a", 0.0, np.inf)


# --- checkpoints -------------------------------------------------------------------------------

class RunsCode:
    """Unpickling this runs ``touch <marker>`` (what a crafted checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    import torch

    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"config": {}, "cfg": {}, "state_dict": {}, "format_version": RunsCode(marker)}, path)
    return path, marker


def test_crafted_checkpoint_runs_nothing_in_any_loader(tmp_path):
    from popstore.estimators.emulator import CurveEmulator
    from popstore.estimators.flows import load_flow
    from popstore.estimators.model import load_model

    path, marker = crafted_checkpoint(tmp_path)
    for load in (load_model, load_flow, CurveEmulator.load):
        with pytest.raises(UserError, match="refusing to load a checkpoint holding more than tensors"):
            load(path)
        assert not marker.exists(), f"{load.__qualname__} ran code from the checkpoint"
    assert "torch.load" not in "".join(  # every loader goes through popstore.checkpoints.load_checkpoint
        p.read_text() for p in (TESTS.parent / "popstore").rglob("*.py") if p.name != "checkpoints.py")


def test_kilonova_evaluate_refuses_a_crafted_emulator(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    pipeline = tmp_path / "k.toml"
    pipeline.write_text(textwrap.dedent(f"""
        [simulator]
        name = "kilonova_du17"
        [priors]
        n_samples = 4
        [store]
        path = "k.zarr"
        [emulator]
        output = "{path}"
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-m", "popstore.cli", "kilonova", "evaluate", str(pipeline)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "refusing to load a checkpoint" in out.stderr
    assert not marker.exists()


# --- bad input at the command line: one line, exit 2, nothing written ------------------------------

def run_cli(args, capsys):
    from popstore.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("args, message", [
    (["--test", "0.6", "--valid", "0.6"], r"test=0.6 \+ valid=0.6 >= 1 would leave training only 16.0%"),
    (["--test", "0.9", "--valid", "0.99"], r"test=0.9 \+ valid=0.99 >= 1"),
    (["--test", "1.5"], r"test fraction must lie in \[0, 1\), got 1.5"),
    (["--groups", "image"], r"groups='image' has dims \('sample', 'band', 'y', 'x'\); it needs one value per sample"),
    (["--groups", "nope"], r"groups='nope': no such variable; per-sample variables: \[.*'n_bright'"),
    (["--exclude", "image"], r"exclude='image' has dims"),
])
def test_split_refuses_bad_fractions_and_groups(args, message, reference, tmp_path, capsys):
    import re

    path = copy(reference, tmp_path)
    code, err = run_cli(["split", path, *args], capsys)
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err
    assert "split" not in open_store(path).coords


@pytest.mark.parametrize("name", ["training", "Train", "all"])
def test_map_dataset_refuses_unknown_split_names(name, reference, tmp_path):
    path = copy(reference, tmp_path)
    popstore.split(path, test=0.25, valid=0.0, seed=1)
    with pytest.raises(UserError, match=rf"split must be one of \['train', 'valid', 'test'\] or None .*got '{name}'"):
        popstore.MapDataset(path, split=name)
    assert len(popstore.MapDataset(path, split="train")) == 18


def test_export_refuses_an_existing_output_unless_overwrite(reference, tmp_path, capsys):
    from popstore.export import to_hdf5, to_legacy

    target = tmp_path / "out.h5"
    target.write_bytes(b"precious")
    code, err = run_cli(["export", reference, "-o", target], capsys)
    assert code == 2 and err == [f"popstore export: error: {target} exists; choose another output path or pass "
                                 "overwrite=True (--overwrite)"]
    assert target.read_bytes() == b"precious"
    to_hdf5(reference, target, overwrite=True)
    assert target.read_bytes()[:4] == b"\x89HDF"
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists"):
        to_legacy(reference, folder, progress=False)
    with pytest.raises(UserError, match="not a legacy export"):
        to_legacy(reference, folder, progress=False, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.fixture
def legacy(reference, tmp_path):
    from popstore.export import to_legacy

    return to_legacy(reference, tmp_path / "legacy", progress=False)


@pytest.mark.parametrize("damage, message", [
    ("delete", r"1 listed maps are missing, first maps/image_g/7.npy"),
    ("reshape", r"maps/image_g/7.npy: map of shape \(4, 4\) and dtype float32; the first map of its column has "
                r"\(8, 8\) float32"),
    ("label", r"line 3: label a = 'abc' is not a number"),
    ("no-csv", r"dataset_full.csv not found"),
])
def test_import_refuses_a_broken_legacy_folder(damage, message, legacy, tmp_path, capsys):
    npy = legacy / "maps/image_g/7.npy"
    if damage == "delete":
        npy.unlink()
    elif damage == "reshape":
        np.save(npy, np.zeros((4, 4), dtype=np.float32))
    elif damage == "label":
        table = pd.read_csv(legacy / "dataset_full.csv")
        table["a"] = table["a"].astype(object)
        table.loc[1, "a"] = "abc"
        table.to_csv(legacy / "dataset_full.csv", index=False)
    else:
        (legacy / "dataset_full.csv").unlink()
    store = tmp_path / "imported.zarr"
    code, err = run_cli(["import", legacy, "-o", store, "-q"], capsys)
    assert code == 2 and len(err) == 1, err
    import re
    assert re.search(message, err[0]), err
    assert not store.exists() and not temporary_path(store).exists()


@pytest.mark.parametrize("key, value, message", [
    ("samples_per_chunk", "abc", r"attr 'samples_per_chunk' = 'abc' is not an integer >= 1"),
    ("samples_per_chunk", 0, r"attr 'samples_per_chunk' = 0 is not an integer >= 1"),
    ("samples_per_shard", 5, r"attr 'samples_per_shard' = 5 is not 0 or a positive multiple"),
    ("simulator_config", "{not json", r"attr 'simulator_config' = '\{not json' is not a JSON object"),
    ("labels", 7, r"attr 'labels' = 7 is not a list of variable names"),
])
def test_info_on_garbage_attrs_is_one_line(key, value, message, reference, tmp_path, capsys):
    import re

    path = copy(reference, tmp_path)
    zarr.open_group(path, mode="r+").attrs[key] = value
    code, err = run_cli(["info", path], capsys)
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err


# --- observed catalogues ----------------------------------------------------------------------------

ATNF_HEADER = "#;PSRJ;P0;P1;Gl;Gb;RAJD;DECJD;S1400;ASSOC;SURVEY;\n;;(s);;(deg);(deg);(deg);(deg);(mJy);;;\n"
ATNF_ROWS = ["1;J0001+0001;0.50;1.0e-15;10.0;1.0;250.0;-20.0;1.2;NAN;pksmb;\n",
             "2;J0002+0002;0.70;2.0e-15;-20.0;-2.0;260.0;-30.0;0.4;NAN;pksmb,htru_pks;\n",
             "3;J0003+0003;1.10;5.0e-14;30.0;0.5;240.0;-10.0;NAN;NAN;pkssw;\n"]


def write_atnf(tmp_path, text: str | bytes) -> Path:
    path = tmp_path / "atnf.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_good_atnf_export_reads(tmp_path):
    from popstore.pulsars.catalog import read_atnf

    df = read_atnf(write_atnf(tmp_path, ATNF_HEADER + "".join(ATNF_ROWS)))
    assert df["PSRJ"].tolist() == ["J0001+0001", "J0002+0002", "J0003+0003"]
    assert df["P1"].tolist() == [1.0e-15, 2.0e-15, 5.0e-14] and np.isnan(df["S1400"].iloc[2])


@pytest.mark.parametrize("text, message", [
    (ATNF_HEADER + ATNF_ROWS[0] + ATNF_ROWS[1].replace("0.70", "0.7O"), r"line 4: column P0 holds '0.7O', not a number"),
    (ATNF_HEADER + ATNF_ROWS[0] + ATNF_ROWS[1].replace("pksmb,htru_pks;", "pksmb;extra;"),
     r"not a ';'-delimited ATNF export: Error tokenizing data.*line 4"),
    ((ATNF_HEADER + ATNF_ROWS[0]).encode() + b"2;J0002+0002;0.70;2.0e-15;-20.0;-2.0;260.0;-30.0;0.4;\xff\xfe;pksmb;\n",
     r"not UTF-8 text \(invalid start byte at byte"),
    (ATNF_HEADER, r"holds no pulsars \(header only\)"),
    (ATNF_HEADER + "".join(ATNF_ROWS) + "".join(ATNF_ROWS).replace("1;J", "9;J"),
     r"3 pulsars listed more than once \(first J0001\+0001 again on line 6\)"),
])
def test_bad_atnf_exports_are_refused_with_the_line(text, message, tmp_path):
    from popstore.pulsars.catalog import read_atnf

    with pytest.raises(UserError, match=message):
        read_atnf(write_atnf(tmp_path, text))


def test_observed_flux_maps_need_a_meerkat_table(tmp_path):
    from popstore.pulsars.catalog import filter_atnf, flux_subsets, read_atnf, survey_subsets

    text = ATNF_HEADER.replace("S1400;", "").replace("(mJy);", "") + "".join(
        r.replace(";1.2;", ";").replace(";0.4;", ";").replace(";NAN;NAN;pkssw", ";NAN;pkssw") for r in ATNF_ROWS)
    subsets = survey_subsets(filter_atnf(read_atnf(write_atnf(tmp_path, text)))[0])
    with pytest.raises(UserError, match="need the MeerKAT TPA census table"):
        flux_subsets(subsets, None)
    with pytest.raises(UserError, match="no S1400 column .* and no MeerKAT table"):
        flux_subsets(subsets, None, atnf_fallback=True)
    meerkat = pd.DataFrame({"PSRJ": ["J0001+0001"], "S1400": [0.002]})
    assert flux_subsets(subsets, meerkat)[0]["PMPS"]["S1400_Jy"].tolist() == [0.002]


def test_pipeline_fixed_value_outside_the_prior_is_refused(tmp_path, client):
    from popstore.pipeline import Pipeline

    pipeline = small_pipeline(tmp_path, """
        [priors.fixed]
        smoothing = -1.0
    """)
    with pytest.raises(UserError, match=r"parameter 'smoothing': 8 values, first row 0 = -1.0, lies outside the prior"):
        Pipeline.load(pipeline).generate(client=client, progress=False)
    assert not (tmp_path / "s.zarr").exists()
