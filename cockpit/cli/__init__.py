"""The commands, one module per family: runs (runs, attach, resume, stop), plan (presets,
estimate, probe, gpus), tools (sample, compare, export, plot, serve). `cockpit.__main__`
parses the arguments and dispatches here by importlib, so `--help` imports none of them."""
