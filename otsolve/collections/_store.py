"""A folder that keeps the finished pairs of a pairwise job, so that a rerun solves only the rest.

``distances.npy`` and ``status.npy`` are memory-mapped .npy files of the matrix shape; a status
of -1 marks a pair not yet solved (the mask). ``failures.jsonl`` holds the messages of pairs that
did not reach optimality and ``job.json`` the fingerprint of the job the folder belongs to.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PENDING = -1


class PairStore:
    def __init__(self, path, shape, fingerprint: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        job = self.path / "job.json"
        files = self.path / "distances.npy", self.path / "status.npy"
        if job.exists():
            meta = json.loads(job.read_text())
            if meta.get("fingerprint") != fingerprint or tuple(meta.get("shape", ())) != tuple(shape):
                raise ValueError(f"store {str(self.path)!r} holds another job (other clouds, method or options; "
                                 f"shape {tuple(meta.get('shape', ()))}); use a new folder or delete this one")
            self.distances = np.lib.format.open_memmap(files[0], mode="r+")
            self.status = np.lib.format.open_memmap(files[1], mode="r+")
        else:
            self.distances = np.lib.format.open_memmap(files[0], mode="w+", dtype=np.float64, shape=shape)
            self.distances[:] = np.nan
            self.status = np.lib.format.open_memmap(files[1], mode="w+", dtype=np.int8, shape=shape)
            self.status[:] = PENDING
            self.distances.flush()
            self.status.flush()
            (self.path / "failures.jsonl").write_text("")
            job.write_text(json.dumps({"fingerprint": fingerprint, "shape": list(shape)}))  # last: the folder is ready

    def pending(self, I, J):
        return self.status[I, J] == PENDING

    def failures(self):
        lines = (self.path / "failures.jsonl").read_text().splitlines()
        return [tuple(json.loads(line)) for line in lines if line]

    def write(self, I, J, values, status, failures):
        """Values first, then the mask: a pair marked finished always has its value on disk."""
        self.distances[I, J] = values
        self.distances.flush()
        with open(self.path / "failures.jsonl", "a") as out:
            for failure in failures:
                out.write(json.dumps([int(failure[0]), int(failure[1]), failure[2]]) + "\n")
        self.status[I, J] = status
        self.status.flush()
