"""The local process pool of independent runs: results in call order, the same in one or several processes."""

import operator

import pytest

from sandbox.pool import map_processes


def test_results_come_back_in_call_order_whatever_the_number_of_processes():
    calls = [(2, 10), (3, 4), (5, 0), (7, 2)]
    expected = [1024, 81, 1, 49]
    assert map_processes(operator.pow, calls, jobs=1) == expected
    assert map_processes(operator.pow, calls, jobs=3) == expected
    assert map_processes(operator.pow, [], jobs=2) == []


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_jobs_must_be_a_positive_integer(jobs):
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        map_processes(operator.pow, [(2, 2)], jobs=jobs)
