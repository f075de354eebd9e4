"""The feature job's input pipeline: decoding in parallel threads gives the vectors of
decoding one file after the other, in the same order."""
from __future__ import annotations

import os

import numpy as np

from jobs.features.extract import computed, decode_threads
from jobs.features.plan import NEW, FileTask
from features_support import ROOT, shared_extractor
from model.preprocess import load_image


def sample_tasks(count: int) -> list[FileTask]:
    paths = sorted(str(path) for path in (ROOT / "sample_images").rglob("*.jpg"))[:count]
    return [FileTask(image_id=i + 1, path=path, kind=NEW, prior_status="pending",
                     size=os.path.getsize(path), mtime_ns=0) for i, path in enumerate(paths)]


def test_parallel_decoding_gives_the_sequential_vectors():
    tasks = sample_tasks(9)
    extractor = shared_extractor()
    # The reference: each file decoded by itself, in order, then the model on the same
    # batches (a batch of one image can differ from a batch of four in the last bits:
    # the model's kernels block differently).
    inputs = []
    for task in tasks:
        with open(task.path, "rb") as file:
            inputs.append(load_image(file.read(), 200_000_000)[0])
    expected = np.concatenate([extractor(np.stack(inputs[start:start + 4]))
                               for start in range(0, len(inputs), 4)])
    for threads in (1, 8):
        batches = list(computed(tasks, extractor, batch_size=4, max_pixels=200_000_000,
                                threads=threads))
        assert [len(b) for b in batches] == [4, 4, 1]
        prepared = [p for batch in batches for p in batch]
        assert [p.task.image_id for p in prepared] == [t.image_id for t in tasks]
        vectors = np.stack([np.frombuffer(p.result.vector, "<f4") for p in prepared])
        np.testing.assert_array_equal(vectors, expected)


def test_decode_threads_default_to_four_at_most_without_a_gpu():
    import tensorflow as tf
    assert decode_threads(3) == 3
    if not tf.config.list_physical_devices("GPU"):
        assert decode_threads(0) == min(4, os.cpu_count() or 1)
    else:
        assert decode_threads(0) == os.cpu_count()
