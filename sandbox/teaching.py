"""Exercise checks for the teaching notebooks (`notebooks/`): a "check your answer" cell calls
`check(name, answer, is_right, hint=...)` and the student reads whether the answer is right.

    answer_1a = None                                   # the student replaces None
    check("1a", answer_1a, lambda a: abs(a - truth) < 0.05, hint="look at the plot above")

`is_right` receives the answer and returns a bool; an answer it cannot even evaluate (a wrong type, a
wrong shape) counts as wrong, with the error shown. `recheck(name, answer)` runs an exercise's check
again (the notebooks' solutions do). Every verdict is recorded in `LOG` and each exercise in
`EXERCISES`, so the test suite can check that a notebook's solutions pass and that an arbitrary wrong
answer does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

UNANSWERED, RIGHT, WRONG = "unanswered", "right", "wrong"


@dataclass(frozen=True)
class Exercise:
    is_right: Callable[[Any], bool]
    hint: str
    why: str = ""


LOG: list[tuple[str, str]] = []  # (exercise name, verdict) for every check made in this process
EXERCISES: dict[str, Exercise] = {}


def verdict(is_right: Callable[[Any], bool], answer) -> tuple[str, str]:
    """(RIGHT / WRONG / UNANSWERED, the reason when an answer could not be evaluated)."""
    if answer is None:
        return UNANSWERED, ""
    try:
        ok = bool(is_right(answer))
    except Exception as err:  # a student's answer of the wrong kind is a wrong answer, not a crash
        return WRONG, f"{type(err).__name__}: {err}"
    return (RIGHT if ok else WRONG), ""


def check(name: str, answer, is_right: Callable[[Any], bool], *, hint: str, why: str = "") -> None:
    """Print whether `answer` to exercise `name` is right: `hint` helps a wrong answer, `why` explains
    a right one. The verdict goes to `LOG`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(is_right):
        raise TypeError(f"is_right must be callable, got {type(is_right).__name__}")
    EXERCISES[name] = Exercise(is_right, hint, why)
    result, reason = verdict(is_right, answer)
    LOG.append((name, result))
    if result == UNANSWERED:
        print(f"Exercise {name}: no answer yet. Replace None above with your answer, then run this cell again.")
    elif result == RIGHT:
        print(f"✓ Exercise {name}: right." + (f" {why}" if why else ""))
    else:
        print(f"✗ Exercise {name}: not yet." + (f" ({reason})" if reason else "") + f" Hint: {hint}")


def recheck(name: str, answer) -> None:
    """Run the check of exercise `name` (made earlier by `check`) on another answer."""
    if name not in EXERCISES:
        raise ValueError(f"no exercise {name!r} has been checked yet; have {sorted(EXERCISES)}")
    exercise = EXERCISES[name]
    check(name, answer, exercise.is_right, hint=exercise.hint, why=exercise.why)
