"""A failing test must stay one failed test on CPython 3.11.0-3.11.7.

There ``ast.parse`` may raise ``SystemError: AST constructor recursion depth mismatch``
(CPython gh-106905 / gh-113035, fixed in 3.11.8). pytest parses a failing test's source
file to draw its traceback, and that error ended a whole CI run with an INTERNALERROR
(3,585 tests, no name of the one that failed). With the guard, the parse that hits it
counts as a file pytest could not parse: the traceback shows the failing line alone.
"""

from __future__ import annotations

import ast
import sys

AFFECTED = (3, 11) <= sys.version_info[:3] < (3, 11, 8)


class _GuardedAst:
    """The ``ast`` module as pytest's source module sees it, with a guarded ``parse``."""

    def __getattr__(self, name: str):
        return getattr(ast, name)

    @staticmethod
    def parse(*args, **kwargs):
        try:
            return ast.parse(*args, **kwargs)
        except SystemError as error:
            raise SyntaxError(f"source not parsed: {error}") from error


def install(force: bool = False) -> None:
    if AFFECTED or force:
        from _pytest._code import source

        source.ast = _GuardedAst()
