"""Widgets the screens share: metric plots and the VRAM bar."""
