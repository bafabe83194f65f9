"""This repository's own pytest configuration.

The circuitcheck plugin itself (``--model``, the ``model`` fixture, the evidence
report) is loaded in every project by its ``pytest11`` entry point
(`circuitcheck.plugin`) once circuitcheck is installed; nothing needs wiring here.
"""
