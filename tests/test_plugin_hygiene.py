"""Installed, circuitcheck changes nothing it was not asked to (issue 20).

Each project here is a fresh pytest process (pytester) in a folder outside this repository,
so this repository's ``conftest.py`` (which loads ``dev``/``ci`` for its own runs) is not
there, and the circuitcheck plugin comes in only through its ``pytest11`` entry point, as in
any project that has circuitcheck installed.
"""

import os

import pytest
from hypothesis import settings

from .test_plugin import run
from .test_workers import STUB_MODEL, WHERE, ran

# the variables by which Hypothesis detects a CI and loads its own "ci" profile
CI_VARIABLES = ("CI", "__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI", "TF_BUILD", "bamboo.buildKey", "BUILDKITE",
                "CIRCLECI", "CIRRUS_CI", "CODEBUILD_BUILD_ID", "GITHUB_ACTIONS", "GITLAB_CI",
                "HEROKU_TEST_RUN_ID", "TEAMCITY_VERSION")

SEES = '''
from hypothesis import settings

def test_sees():
    now = settings()
    print(f"SEES {{settings.get_current_profile_name()}} {{now.max_examples}} {{now.derandomize}} {{now.deadline}}")
    assert settings.get_current_profile_name() == {profile!r}
    assert (now.max_examples, now.derandomize) == ({max_examples}, {derandomize})
    assert now.deadline {deadline}
'''

OWN_PROFILE = '''
from hypothesis import settings

settings.register_profile("mine", max_examples=3)
settings.load_profile("mine")
'''


@pytest.fixture
def outside_ci(monkeypatch):
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def sees(pytester, *args, profile, max_examples, derandomize, deadline="is not None"):
    """Run a project whose one test checks the Hypothesis settings it sees; it must pass."""
    pytester.makepyfile(test_sees=SEES.format(profile=profile, max_examples=max_examples,
                                              derandomize=derandomize, deadline=deadline))
    result = run(pytester, "--no-report", "-s", *args)
    result.assert_outcomes(passed=1)
    return result


# -- Hypothesis settings: the project's own -------------------------------------------------


def test_a_project_without_settings_sees_hypothesis_defaults(pytester, outside_ci):
    """Before issue 20 this project saw circuitcheck's dev profile: 20 examples, derandomised."""
    sees(pytester, profile="default", max_examples=100, derandomize=False)


def test_a_project_in_ci_keeps_hypothesis_own_ci_profile(pytester, outside_ci, monkeypatch):
    """Hypothesis loads its own "ci" profile (100 examples, derandomised) where CI is set;
    circuitcheck used to replace it with its own "ci" (10 examples)."""
    monkeypatch.setenv("CI", "true")
    sees(pytester, profile="ci", max_examples=100, derandomize=True, deadline="is None")


def test_a_projects_own_profile_from_its_conftest_is_kept_whole(pytester, outside_ci):
    """Its profile is built on Hypothesis's defaults, not on circuitcheck's (which made it
    derandomised and took its deadline away)."""
    pytester.makeconftest(OWN_PROFILE)
    sees(pytester, profile="mine", max_examples=3, derandomize=False)


def test_a_projects_own_profile_from_an_early_plugin_is_kept(pytester, outside_ci):
    """A ``-p`` plugin is imported before the entry points: circuitcheck, imported after it,
    used to load its dev profile over the project's."""
    pytester.makepyfile(project_settings=OWN_PROFILE)
    pytester.syspathinsert()
    sees(pytester, "-p", "project_settings", profile="mine", max_examples=3, derandomize=False)


def test_circuitcheck_profiles_are_there_to_choose_with_hypothesis_own_option(pytester, outside_ci):
    sees(pytester, "--hypothesis-profile", "circuitcheck-dev", profile="circuitcheck-dev", max_examples=20,
         derandomize=True, deadline="is None")


def fields(profile) -> dict:
    return {name: getattr(profile, name) for name in ("max_examples", "derandomize", "deadline", "print_blob",
                                                      "database", "suppress_health_check")}


def test_circuitcheck_profiles_hold_what_they_promise():
    """Built on Hypothesis's own default profile: the same whichever profile was loaded when
    circuitcheck was imported (a CI's, this repository's)."""
    dev, ci, thorough = (settings.get_profile(f"circuitcheck-{name}") for name in ("dev", "ci", "thorough"))
    assert (dev.max_examples, ci.max_examples, thorough.max_examples) == (20, 10, 100)
    assert dev.derandomize and ci.derandomize and not thorough.derandomize  # thorough: a fresh search each run
    assert ci.print_blob and not dev.print_blob
    for profile in (dev, ci, thorough):
        assert profile.deadline is None
        assert {"too_slow", "data_too_large"} <= {check.name for check in profile.suppress_health_check}


def test_this_repository_names_the_same_profiles_and_loads_dev_or_ci(request):
    """This repository's conftest.py keeps `make test` and `make check` as they were."""
    for name in ("dev", "ci", "thorough"):
        assert fields(settings.get_profile(name)) == fields(settings.get_profile(f"circuitcheck-{name}"))
    expected = request.config.getoption("--hypothesis-profile") or ("ci" if os.environ.get("CI") else "dev")
    assert settings.get_current_profile_name() == expected


# -- pytest-xdist: --dist is the caller's -----------------------------------------------------


def test_dash_n_alone_is_xdists_own_load_distribution(pytester):
    """``-n 2`` without ``--dist`` used to become ``--dist loadgroup``; now it is xdist's own
    default (``load``), and no ``xdist_group`` mark is added."""
    pytest.importorskip("xdist")
    pytester.makeconftest(STUB_MODEL)
    pytester.makepyfile(test_where=WHERE)
    result = run(pytester, "-n", "2", "-v", "--model", "tiny-llama", "--model", "tiny-gpt2", "--no-report")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["scheduling tests via LoadScheduling"])
    assert {mark for _, mark in ran(pytester).values()} == {"None"}
