"""The Textual app: plan presets, launch runs and watch them (the only package that imports textual)."""
