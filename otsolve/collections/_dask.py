"""Chunks of pairs as tasks on a dask.distributed cluster (imported only when a client is given)."""
from __future__ import annotations

from ._chunks import solve_chunk


def check_client(client):
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("client= needs dask.distributed: pip install 'otsolve[dask]'") from None
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client; got {client!r} of type {type(client).__name__}")
    return client


def run_chunks(client, data, chunks, spec, on_done):
    """Scatter the data once to every worker, submit one task a chunk and hand each result to
    ``on_done(chunk_index, result)`` as it arrives. The tasks run the serial kernels (a worker's
    threads are the parallelism); Dask reruns the tasks of a worker that dies."""
    from distributed import as_completed

    shared = client.scatter(data, broadcast=True, hash=False)
    futures = {client.submit(solve_chunk, shared, I, J, spec, False, pure=False): c
               for c, (I, J) in enumerate(chunks)}
    try:
        for future in as_completed(futures):
            on_done(futures[future], future.result())
            future.release()
    finally:
        client.cancel(list(futures) + [shared])
