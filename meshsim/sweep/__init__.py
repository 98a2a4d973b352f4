"""Seed sweeps (`meshsim sweep`): many runs of one scenario, on a local process pool or a Dask
cluster. The model (which runs, what each hands back, what they add up to) is `core/sweep.py`;
this package runs them: `job.py` is what a worker does, `engines.py` where it does it, and
`driver.py` puts the runs back in order."""
