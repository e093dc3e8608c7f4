"""The exercise checker of the notebooks tells right from wrong and never crashes on a bad answer."""

import pytest

from sandbox import teaching


def last_verdict():
    return teaching.LOG[-1]


def test_right_wrong_and_unanswered(capsys):
    is_right = lambda a: abs(a - 2.0) < 0.1  # noqa: E731
    teaching.check("t1", 2.05, is_right, hint="closer to two", why="because")
    assert "✓ Exercise t1: right. because" in capsys.readouterr().out and last_verdict() == ("t1", "right")
    teaching.check("t1", 3.0, is_right, hint="closer to two")
    assert "✗ Exercise t1: not yet. Hint: closer to two" in capsys.readouterr().out and last_verdict() == ("t1", "wrong")
    teaching.check("t1", None, is_right, hint="h")
    assert "no answer yet" in capsys.readouterr().out and last_verdict() == ("t1", "unanswered")
    assert teaching.EXERCISES["t1"].is_right is is_right


def test_recheck_reuses_the_registered_check(capsys):
    teaching.check("t2", None, lambda a: a == "x", hint="the letter x", why="x it is")
    capsys.readouterr()
    teaching.recheck("t2", "x")
    assert "✓ Exercise t2: right. x it is" in capsys.readouterr().out
    teaching.recheck("t2", "y")
    assert "Hint: the letter x" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no exercise 'nope'"):
        teaching.recheck("nope", 1)


def test_an_answer_of_the_wrong_kind_is_wrong_not_a_crash(capsys):
    teaching.check("t3", "two", lambda a: abs(a - 2.0) < 0.1, hint="a number")
    out = capsys.readouterr().out
    assert "not yet" in out and "TypeError" in out and last_verdict() == ("t3", "wrong")


@pytest.mark.parametrize("name, is_right", [("", lambda a: True), ("t4", "not callable")])
def test_bad_arguments(name, is_right):
    with pytest.raises((ValueError, TypeError), match="name|is_right"):
        teaching.check(name, 1, is_right, hint="h")
