"""The circuitcheck pytest plugin, loaded through the ``pytest11`` entry point.

It composes three plugins: `circuitcheck.fixtures.plugin` (``--model``,
``--device``, ``--dtype``, the ``model`` fixture, ``@pytest.mark.models``),
`circuitcheck.fixtures.workers` (``pytest -n N`` with pytest-xdist: a GPU and a
share of the cores per worker, ``--gpus-per-worker``, one worker per model with ``--dist loadgroup``) and
`circuitcheck.reports.plugin` (`reports.facts`, `reports.capture`: evidence per test and
per wider-scoped fixture, the ``evidence`` fixture; `reports.writer`: the HTML and JSON
report). Installing circuitcheck is enough for any project's
pytest to load it; ``-p no:circuitcheck`` turns it off.
"""

pytest_plugins = ["circuitcheck.fixtures.plugin", "circuitcheck.fixtures.workers",
                  "circuitcheck.reports.plugin"]
