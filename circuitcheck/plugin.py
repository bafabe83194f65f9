"""The circuitcheck pytest plugin, loaded through the ``pytest11`` entry point.

It composes the two plugins: `circuitcheck.fixtures.plugin` (``--model``,
``--device``, ``--dtype``, the ``model`` fixture, ``@pytest.mark.models``) and
`circuitcheck.reports.plugin` (evidence capture, the ``evidence`` fixture, the
HTML and JSON report). Installing circuitcheck is enough for any project's
pytest to load it; ``-p no:circuitcheck`` turns it off.
"""

pytest_plugins = ["circuitcheck.fixtures.plugin", "circuitcheck.reports.plugin"]
