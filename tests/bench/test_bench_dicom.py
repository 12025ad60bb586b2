"""bench/bench_dicom.py's pure helpers: the generated files' sizes and stored values."""

import numpy as np

from bench import bench_dicom


def test_sides_spread_from_the_smallest_to_the_largest_in_multiples_of_16():
    sides = bench_dicom.side_lengths(5)
    assert sides == [1024, 1280, 1536, 1792, 2048]
    assert bench_dicom.side_lengths(1) == [1024]
    assert all(side % 16 == 0 for side in bench_dicom.side_lengths(7, 1000, 2000))


def test_stored_values_keep_the_picture_in_the_high_bits_under_noise():
    gray = np.array([[0, 1], [128, 255]], dtype=np.uint8)
    stored = bench_dicom.stored_values(gray, seed=0)
    assert stored.dtype == np.uint16 and stored.max() < 2 ** bench_dicom.BITS_STORED
    assert np.array_equal(stored >> (bench_dicom.BITS_STORED - 8), gray)
    assert np.array_equal(stored, bench_dicom.stored_values(gray, seed=0))


def test_spin_is_the_same_work_everywhere():
    assert bench_dicom.spin(4) == 0 + 1 + 4 + 9
