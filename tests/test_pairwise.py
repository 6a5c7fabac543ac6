"""otsolve.pairwise against the loop over the one-pair functions, locally and on Dask."""
import os
import threading
import time
import warnings

import numpy as np
import pytest

import otsolve
from otsolve.collections import matrix as pairwise_module

LOOP_RTOL = 1e-12  # same simplex and costs; only the order of the final sum <C, P> differs


def _collection(seed=0, K=6, d=2, weighted=True):
    rng = np.random.default_rng(seed)
    clouds = [rng.normal(size=(int(rng.integers(4, 16)), d)) + k % 3 for k in range(K)]
    weights = [rng.random(len(x)) for x in clouds] if weighted else None
    if weighted:
        weights[1][0] = 0.0  # a point that moves no mass
    return clouds, weights


def _unit(w):
    return None if w is None else w / w.sum()


def _loop(f, xs, ws, ys=None, vs=None):
    symmetric = ys is None
    ys, vs = (xs, ws) if symmetric else (ys, vs)
    ws, vs = ws or [None] * len(xs), vs or [None] * len(ys)
    D = np.array([[0.0 if symmetric and i >= j else f(x, y, _unit(a), _unit(b))
                   for j, (y, b) in enumerate(zip(ys, vs))] for i, (x, a) in enumerate(zip(xs, ws))])
    return D + D.T if symmetric else D  # the upper triangle, mirrored, as pairwise does


@pytest.mark.parametrize("p, metric", [(1, "euclidean"), (2, "euclidean"), (1, "cityblock")])
def test_exact_equals_the_loop_over_wasserstein(p, metric):
    clouds, weights = _collection(p)
    res = otsolve.pairwise(clouds, weights, p=p, metric=metric)
    expected = _loop(lambda x, y, a, b: otsolve.wasserstein(x, y, a, b, p=p, metric=metric).value, clouds, weights)
    np.testing.assert_allclose(res.distances, expected, rtol=LOOP_RTOL, atol=0)
    assert (res.status == otsolve.Status.OPTIMAL).all() and res.failures == [] and res.success
    np.testing.assert_array_equal(res.distances, res.distances.T)
    assert res.seconds > 0


def test_pairs_too_large_for_a_dense_matrix_go_one_by_one(monkeypatch):
    from otsolve.collections import _chunks
    monkeypatch.setattr(_chunks, "DENSE_MAX_ENTRIES", 100)  # pairs above 100 costs: the per-pair path
    clouds, weights = _collection(11)
    res = otsolve.pairwise(clouds, weights, p=2, chunk_size=7)
    expected = _loop(lambda x, y, a, b: otsolve.wasserstein(x, y, a, b).value, clouds, weights)
    np.testing.assert_allclose(res.distances, expected, rtol=LOOP_RTOL, atol=0)
    sizes = np.array([np.count_nonzero(w) for w in weights])
    assert (np.outer(sizes, sizes) > 100).any() and (np.outer(sizes, sizes) <= 100).any()  # both paths ran


SINKHORN_RTOL = 1e-9  # both runs meet tol = 1e-11 on the marginals of their plans; the iterates
                     # differ (the batched kernel has no Newton phase, sums in another order)


def _sinkhorn_loop(clouds, weights, **options):
    return _loop(lambda x, y, a, b: otsolve.wasserstein(x, y, a, b, method="sinkhorn", **options).value,
                 clouds, weights)


def _count_loop_pairs(monkeypatch):
    """Pairs solved one by one (the per-pair path), recorded as they go."""
    from otsolve.collections import _chunks
    counted, loop_chunk = [], _chunks._loop_chunk
    monkeypatch.setattr(_chunks, "_loop_chunk", lambda packed, I, J, spec: counted.append(len(I))
                        or loop_chunk(packed, I, J, spec))
    return counted


@pytest.mark.parametrize("p, reg", [(2, 1.0), (2, 0.1), (1, 0.3), (1, 0.05)])
def test_sinkhorn_batched_equals_the_loop(p, reg, monkeypatch):
    clouds, weights = _collection(8, K=6)  # unequal sizes, weights, one zero weight
    counted = _count_loop_pairs(monkeypatch)
    res = otsolve.pairwise(clouds, weights, p=p, method="sinkhorn", reg=reg, tol=1e-11)
    expected = _sinkhorn_loop(clouds, weights, p=p, reg=reg, tol=1e-11)
    np.testing.assert_allclose(res.distances, expected, rtol=SINKHORN_RTOL, atol=0)
    assert (res.status == otsolve.Status.OPTIMAL).all() and res.failures == []
    assert sum(counted) < 15  # the kernel certified pairs itself


def test_sinkhorn_at_tiny_reg_every_pair_goes_one_by_one(monkeypatch):
    clouds, weights = _collection(8, K=6)
    counted = _count_loop_pairs(monkeypatch)
    res = otsolve.pairwise(clouds, weights, method="sinkhorn", reg=1e-3)  # too slow without Newton
    assert sum(counted) == 15
    np.testing.assert_array_equal(res.distances, _sinkhorn_loop(clouds, weights, reg=1e-3))
    assert (res.status == otsolve.Status.OPTIMAL).all()


def test_sinkhorn_options_the_kernel_does_not_take_go_one_by_one(monkeypatch):
    clouds, weights = _collection(9, K=4)
    for options in ({"reg_m": 1.0}, {"tol": 0.0, "max_iter": 50}):
        counted = _count_loop_pairs(monkeypatch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", otsolve.ConvergenceWarning)  # tol = 0 runs out its max_iter
            res = otsolve.pairwise(clouds, weights, method="sinkhorn", reg=0.2, **options)
        np.testing.assert_array_equal(res.distances, _sinkhorn_loop(clouds, weights, reg=0.2, **options))
        assert sum(counted) == 6
    res = otsolve.pairwise(clouds, weights, method="sinkhorn", reg=0.5, eps_scaling=False, tol=1e-11)
    np.testing.assert_allclose(res.distances, _sinkhorn_loop(clouds, weights, reg=0.5, eps_scaling=False,
                                                             tol=1e-11), rtol=SINKHORN_RTOL, atol=0)


def test_sinkhorn_identical_clouds_take_the_symmetric_path(monkeypatch):
    clouds, weights = _collection(10, K=3)
    clouds, weights = clouds + [clouds[0]], weights + [weights[0]]
    counted = _count_loop_pairs(monkeypatch)
    res = otsolve.pairwise(clouds, weights, method="sinkhorn", reg=0.5)
    assert sum(counted) >= 1  # the pair (0, 3), at least
    assert res.distances[0, 3] == _sinkhorn_loop([clouds[0], clouds[3]], [weights[0], weights[3]], reg=0.5)[0, 1]


def test_cross_form_equals_the_loop():
    clouds, weights = _collection(2, K=7)
    res = otsolve.pairwise(clouds[:3], weights[:3], others=clouds[3:], other_weights=weights[3:], p=2)
    loop = _loop(lambda x, y, a, b: otsolve.wasserstein(x, y, a, b).value, clouds[:3], weights[:3],
                 clouds[3:], weights[3:])
    assert res.distances.shape == (3, 4)
    np.testing.assert_allclose(res.distances, loop, rtol=LOOP_RTOL, atol=0)


def test_sliced_and_1d_equal_their_one_pair_functions():
    clouds, weights = _collection(3, d=3)
    res = otsolve.pairwise(clouds, weights, method="sliced", p=2, n_projections=20, seed=4)
    loop = _loop(lambda x, y, a, b: otsolve.sliced_wasserstein(x, y, a, b, n_projections=20, seed=4),
                 clouds, [w for w in weights])
    np.testing.assert_allclose(res.distances, loop, rtol=1e-14)  # weights normalised before vs inside
    lines, line_weights = _collection(4, d=1)
    res = otsolve.pairwise([x[:, 0] for x in lines], line_weights, method="1d", p=1.5)
    loop = _loop(lambda x, y, a, b: otsolve.wasserstein_1d(x[:, 0], y[:, 0], a, b, p=1.5), lines, line_weights)
    np.testing.assert_allclose(res.distances, loop, rtol=1e-14)
    uniform = [x[:, 0] for x in lines]
    res = otsolve.pairwise(uniform, method="1d", p=1.5)
    np.testing.assert_array_equal(res.distances, _loop(lambda x, y, a, b: otsolve.wasserstein_1d(x, y, p=1.5),
                                                       uniform, None))


def test_failures_are_listed_never_silent():
    clouds, _ = _collection(5, K=3, weighted=False)
    with pytest.warns(otsolve.ConvergenceWarning, match="did not reach optimality"):
        res = otsolve.pairwise(clouds, max_iter=0)
    assert len(res.failures) == 3 and not res.success
    assert [(i, j) for i, j, _ in res.failures] == [(0, 1), (0, 2), (1, 2)]
    assert "max_iter=0" in res.failures[0][2]
    assert res.status[0, 1] == res.status[1, 0] == otsolve.Status.MAX_ITER
    assert np.isfinite(res.distances).all()


def test_sinkhorn_failures_carry_the_solver_message():
    clouds, weights = _collection(14, K=3)
    with pytest.warns(otsolve.ConvergenceWarning, match="did not reach optimality"):
        res = otsolve.pairwise(clouds, weights, method="sinkhorn", reg=0.01, max_iter=2)
    assert [(i, j) for i, j, _ in res.failures] == [(0, 1), (0, 2), (1, 2)]
    assert all("max_iter" in message for _, _, message in res.failures)
    assert (res.status[~np.eye(3, dtype=bool)] == otsolve.Status.MAX_ITER).all()


def test_progress_bar(capsys):
    clouds, _ = _collection(6, K=4, weighted=False)
    otsolve.pairwise(clouds, method="sliced", seed=0, progress=True)
    assert "6/6" in capsys.readouterr().err


@pytest.mark.parametrize("args, kwargs, error, match", [
    (([np.zeros((3, 2)), np.zeros((3, 3))],), {}, ValueError, r"clouds\[1\] has dimension 3 but the clouds have dimension 2"),
    (([np.zeros((3, 2)), np.zeros((0, 2))],), {}, ValueError, r"clouds\[1\] is empty"),
    (([np.zeros((3, 2)), np.zeros((4, 2))], [None, np.ones(3)]), {}, ValueError,
     r"weights\[1\] has 3 entries but must have 4 \(points in clouds\[1\]\)"),
    (([np.zeros((3, 2)), np.full((2, 2), np.inf)],), {}, ValueError, r"clouds\[1\] contains inf at \(0, 0\)"),
    (([np.zeros((3, 2))],), {"others": [np.zeros((2, 1))]}, ValueError, r"others\[0\] has dimension 1"),
    (([np.zeros((3, 2))],), {"client": "tcp://127.0.0.1:8786"}, TypeError, "client must be a dask.distributed.Client"),
    (([np.zeros((3, 2))],), {"reg": 0.1}, TypeError, "unknown option 'reg' for method='exact'"),
    (([np.zeros((3, 2))],), {"method": "1d"}, ValueError, "method='1d' needs points on the line"),
    ((np.zeros(3),), {}, TypeError, "clouds must be a sequence"),
])
def test_rejects_bad_input_naming_the_cloud(args, kwargs, error, match):
    if "client" in kwargs:
        pytest.importorskip("distributed")
    with pytest.raises(error, match=match):
        otsolve.pairwise(*args, **kwargs)


def test_store_resumes_only_the_missing_pairs(tmp_path, monkeypatch):
    clouds, weights = _collection(7, K=5)
    full = otsolve.pairwise(clouds, weights, store=tmp_path / "job")
    status = np.load(tmp_path / "job" / "status.npy", mmap_mode="r+")
    distances = np.load(tmp_path / "job" / "distances.npy", mmap_mode="r+")
    status[0, 3] = status[2, 4] = -1  # as if the run had stopped before these two pairs
    distances[0, 3] = distances[2, 4] = np.nan
    status.flush(), distances.flush()
    solved = []
    original = pairwise_module.solve_chunk
    monkeypatch.setattr(pairwise_module, "solve_chunk", lambda d, I, J, *a: solved.extend(zip(I, J)) or original(d, I, J, *a))
    again = otsolve.pairwise(clouds, weights, store=tmp_path / "job")
    assert sorted(solved) == [(0, 3), (2, 4)]
    np.testing.assert_array_equal(again.distances, full.distances)
    with pytest.raises(ValueError, match="holds another job"):
        otsolve.pairwise(clouds, weights, p=1, store=tmp_path / "job")


def test_import_does_not_import_dask():
    import subprocess
    import sys
    code = "import sys, otsolve; print('distributed' in sys.modules or 'dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "False"


def test_dask_run_equals_the_local_run_to_the_bit(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    clouds, weights = _collection(8, K=6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        for method, options in (("exact", {}), ("sliced", {"seed": 0}), ("sinkhorn", {"reg": 0.1})):
            local = otsolve.pairwise(clouds, weights, method=method, **options)
            remote = otsolve.pairwise(clouds, weights, method=method, client=client, chunk_size=4, **options)
            np.testing.assert_array_equal(remote.distances, local.distances)
            np.testing.assert_array_equal(remote.status, local.status)
        stored = otsolve.pairwise(clouds, weights, client=client, chunk_size=4, store=tmp_path / "job")
    local = otsolve.pairwise(clouds, weights)
    monkeypatch.setattr(pairwise_module, "solve_chunk", None)  # a finished store needs no solver
    again = otsolve.pairwise(clouds, weights, store=tmp_path / "job")
    np.testing.assert_array_equal(again.distances, stored.distances)
    np.testing.assert_array_equal(again.distances, local.distances)
    np.testing.assert_array_equal(again.status, local.status)


def test_dask_run_survives_a_killed_worker():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(9)
    clouds = [rng.normal(size=(150, 2)) for _ in range(12)]  # 66 pairs: ~0.1 s of work per worker at least
    local = otsolve.pairwise(clouds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the nanny's restart notices
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            pids = client.run(os.getpid)
            out = {}
            job = threading.Thread(target=lambda: out.update(res=otsolve.pairwise(clouds, client=client, chunk_size=2)))
            job.start()
            deadline = time.monotonic() + 60
            while not any(client.processing().values()) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(next(iter(pids.values())), 9)  # mid-job: its running task and its data are lost
            assert job.is_alive()  # the kill came before the end of the job
            job.join(120)
            assert set(client.run(os.getpid).values()) != set(pids.values())  # the nanny replaced it
    assert "res" in out
    np.testing.assert_array_equal(out["res"].distances, local.distances)


def test_command_line_saves_the_matrix(tmp_path, capsys):
    from otsolve.cli import main
    clouds, _ = _collection(10, K=3, weighted=False)
    files = []
    for k, x in enumerate(clouds):
        files.append(str(tmp_path / f"cloud{k}.npy"))
        np.save(files[-1], x)
    out = str(tmp_path / "D.npy")
    assert main(["pairwise", *files, "--method", "exact", "--p", "1", "--out", out, "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(out), otsolve.pairwise(clouds, p=1).distances)
    assert "3 clouds (3 pairs)" in capsys.readouterr().out


def test_inputs_are_unchanged():
    clouds, weights = _collection(12)
    copies = [x.copy() for x in clouds], [w.copy() for w in weights]
    otsolve.pairwise(clouds, weights)
    otsolve.pairwise(clouds, weights, method="sliced", seed=0)
    for got, want in zip(clouds + weights, copies[0] + copies[1]):
        np.testing.assert_array_equal(got, want)


def test_command_line_on_a_dask_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    from otsolve.cli import main
    clouds, _ = _collection(13, K=3, weighted=False)
    files = [str(tmp_path / f"cloud{k}.csv") for k in range(3)]
    for f, x in zip(files, clouds):
        np.savetxt(f, x, delimiter=",")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        out = str(tmp_path / "D.npy")
        code = main(["pairwise", *files, "--scheduler", cluster.scheduler_address, "--out", out, "--no-progress"])
    assert code == 0
    np.testing.assert_allclose(np.load(out), otsolve.pairwise([np.loadtxt(f, delimiter=",") for f in files]).distances,
                               rtol=0, atol=0)
    assert f"on {cluster.scheduler_address}" in capsys.readouterr().out
