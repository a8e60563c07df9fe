"""Bad input on the command line: one-line errors (fail, and EnvError for an env that cannot be made), flag range
checks."""

import sys
from typing import NoReturn


class EnvError(ValueError):
    """An env id (or --env-kwargs) that cannot be made; the message is meant to be shown to the user as is. The env
    modules raise it (common/envs.py, gfootball.py, smax.py); common/run.py turns it into fail()."""


def fail(message: str, code: int = 2) -> NoReturn:
    """One `error: ...` line on stderr, then exit: 2 for bad input (as argparse), 1 for a failed run."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def check_flags(args, positive: str = "", non_negative: str = "", fractions: str = "") -> None:
    """fail() on the first flag outside its range, naming it as the command line spells it. Each range
    lists the Args field names it applies to, separated by spaces; a flag left at None is not checked."""
    for names, ok, wanted in (
        (positive, lambda v: v > 0, "> 0"),
        (non_negative, lambda v: v >= 0, ">= 0"),
        (fractions, lambda v: 0 <= v <= 1, "between 0 and 1"),
    ):
        for name in names.split():
            value = getattr(args, name)
            if value is not None and not ok(value):
                fail(f"--{name.replace('_', '-')} must be {wanted}, got {value}")
