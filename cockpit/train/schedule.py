from cockpit.schedule import *  # noqa: F403  # transitional
