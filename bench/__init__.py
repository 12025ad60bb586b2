"""Speed benchmarks and diagnoses, each run from the repository root as `python -m bench.<name>`.

Each prints its numbers beside a peer measured in the same run (`bench/timing.py`); outputs of
past runs are in `bench/results/`.
"""
