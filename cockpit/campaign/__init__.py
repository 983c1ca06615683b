"""Campaigns: a lasting queue of runs and sweeps, and the scheduler that starts them.

The queue (an SQLite database in the per-user state folder) is this package's contract; the
scheduler (one detached process per machine) is the only code that starts runs on its own,
locally or through a cluster's scheduler. The faces read and change the queue; they never
start a queued run themselves.
"""
