"""Imported first by each script run as a program, before torch (which takes seconds to import): Ctrl-C while the
script starts up, before its run has anything to save, stops it with one line and exit code 130 (128 + SIGINT, what
a shell reports for Ctrl-C) instead of a KeyboardInterrupt traceback from whichever import it hit. Once training
starts, the run's own handler replaces this one (common/checkpoint.py's Checkpointer: a checkpoint, then stop)."""

import signal

from common.cli import fail


def _interrupted(signum, frame):
    fail("interrupted before training started: nothing to save", code=128 + signum)


signal.signal(signal.SIGINT, _interrupted)
