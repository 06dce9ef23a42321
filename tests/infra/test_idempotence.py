"""site.yml converges a bare host in one run, and a second run changes nothing."""

from __future__ import annotations


def test_first_run_succeeds_on_a_bare_host(provisioned):
    first = provisioned.first
    assert first.rc == 0, first.tail()
    assert first.recap, "no PLAY RECAP in the output"
    for host, counts in first.recap.items():
        assert counts["failed"] == 0, f"{host}: {counts}"
        assert counts["unreachable"] == 0, f"{host}: {counts}"
    print(f"\nfirst run: {first.seconds} s, recap {first.recap}")


def test_first_run_bootstraps_through_the_root_account(provisioned):
    """A bare host only lets root in: site.yml must notice and fall back to it once."""
    assert "Fall back to the bootstrap user for this first run" in provisioned.first.stdout
    fallback = provisioned.first.stdout.split("Fall back to the bootstrap user", 1)[1]
    assert fallback.split("\n", 1)[1].lstrip().startswith("ok:"), fallback[:300]


def assert_changed_nothing(run, label: str) -> None:
    assert run.rc == 0, run.tail()
    changed = {host: counts["changed"] for host, counts in run.recap.items()}
    assert changed and all(count == 0 for count in changed.values()), (
        f"{label} changed {changed}; tasks: {run.changed_tasks()}"
    )
    print(f"\n{label}: {run.seconds} s, recap {run.recap}")


def test_second_run_changes_nothing(provisioned):
    assert_changed_nothing(provisioned.second, "second run")


def test_second_run_logs_in_as_the_administrator(provisioned):
    """After the first run root cannot log in; the second run needs no fallback."""
    stdout = provisioned.second.stdout
    skipped = stdout.split("Fall back to the bootstrap user for this first run", 1)[1]
    assert skipped.split("\n", 1)[1].lstrip().startswith("skipping:"), skipped[:300]
