"""How work runs: in this process, or in a pool started by the worker program.

Backends know nothing of the cache: they start the worker on a run directory, say
whether it still runs, and stop it. The dispatcher reads what the worker wrote.
"""
