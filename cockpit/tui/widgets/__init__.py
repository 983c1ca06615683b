"""Widgets the screens share: metric plots, the VRAM bar, the key footer, text panels, table rows."""
