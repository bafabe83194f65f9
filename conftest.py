"""Wires circuitcheck into every pytest run in this repository.

fixtures.plugin: --model/--device/--dtype, the ``model`` fixture, @pytest.mark.models.
reports.plugin: evidence capture, the ``evidence`` fixture, reports/out/index.html.
"""

pytest_plugins = ["fixtures.plugin", "reports.plugin"]
