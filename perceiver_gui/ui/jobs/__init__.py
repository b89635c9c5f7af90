"""The panels' work that runs in worker threads and needs torch, numpy or PIL, one module per panel.

Each module imports what it needs at its top. The panels never import these modules themselves: they name
them with `deferred.module(...)` and run their functions with `start_worker(module.job("name"), ...)`,
which imports the module in the worker (ui/deferred.py), so the window never waits for it.
"""
