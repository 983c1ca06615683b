"""Leaves every layer may import: human formatting of numbers and events, what counts as a
number, atomic file writes, and the exit codes and stderr lines of the commands."""
