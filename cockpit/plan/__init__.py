"""The planning core: what a run will be before it exists.

- presets: the preset schema (dataclasses), validation that names the field, --set overrides,
  built-in and user presets;
- estimate: parameters, FLOPs, the VRAM breakdown, batch suggestion, ETA, MFU (pure arithmetic);
- gpu: NVML facts (never raises) and the catalog of GPUs to plan against;
- trace_child: the tracer child's argv, running it, and the cache of traced peaks;
- schedule: the learning-rate schedules (the trainer and the lr health rules share it);
- golf_env: seed 001's environment variables as overrides for golf runs.

No torch and no textual here: both faces, the campaign scheduler and the training child use it.
"""
