"""The app's screens: presets, editor, run, runs, and small dialogs."""
