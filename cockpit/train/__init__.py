"""The training child process: model, data, loop and checkpoints (the only place torch is imported)."""
