"""A bounded burst of the reader's mutation fuzzer: every mutated file reads or raises JpegError."""
from .conftest import requires_shared
from .fuzz_reader import fuzz, mutate, seed_files

import random


@requires_shared
def test_mutated_corpus_files_read_or_raise_jpeg_error():
    counts = fuzz(iterations=1500, seed=1234)
    assert counts["runs"] == 1500
    # Both outcomes must occur, or the mutations are not reaching the decoder.
    assert counts["error"] > 100 and counts["ok"] > 50, counts


@requires_shared
def test_mutations_change_the_input():
    seeds = seed_files()
    rng = random.Random(0)
    changed = sum(mutate(s, seeds, rng) != s for s in seeds[:50])
    assert changed >= 45
