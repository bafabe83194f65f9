"""This repository's own pytest configuration.

The circuitcheck plugin itself (``--model``, the ``model`` fixture, the evidence
report) is loaded in every project by its ``pytest11`` entry point
(`circuitcheck.plugin`) once circuitcheck is installed; nothing needs wiring here.

What the plugin leaves to each project, this repository chooses here: its Hypothesis
profile. The plugin only registers ``circuitcheck-dev|ci|thorough`` (and loads none);
this repository also names them ``dev``, ``ci`` and ``thorough`` and loads ``ci`` when
``CI`` is set, ``dev`` otherwise (``--hypothesis-profile NAME`` still picks another).
This module is imported before any plugin's ``pytest_configure``, so Hypothesis's own
``--hypothesis-profile`` is applied after it. With pytest-xdist, pass ``--dist loadgroup``
for one worker per model (the plugin never changes ``--dist``).
"""

import os

from hypothesis import settings

from circuitcheck.fixtures import profiles

profiles.register(prefix="")
settings.load_profile("ci" if os.environ.get("CI") else "dev")
