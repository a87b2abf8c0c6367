"""rnnaccel-sweep: a grid of targets and compile options over models, each point compiled,
simulated and evaluated on a data set, run on a Dask cluster, cached point by point.

Unlike the rest of `compiler/`, this package imports `runtime_sim/`: like the tests, it is a tool
that checks the compiler's output by running it (docs/architecture.md). Its modules:

    grid.py     the comma lists of the command line, the points they span, each point's cache key
    point.py    one point: compile, simulate, evaluate; a row of the results table
    cache.py    one small JSON file per computed point, written atomically
    run.py      the points not cached, on a dask.distributed Client (local cluster or a scheduler's)
    pareto.py   the Pareto fronts (latency-energy, stored size-accuracy), as text and as a PNG
    cli.py      the command line
"""
