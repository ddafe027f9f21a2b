"""What every MixBench command line shares: --help shows defaults, deprecated flag names warn.

One vocabulary across the CLIs (tests/test_cli.py walks every parser):

- ``--out DIR``: the folder the command writes its files into (exactly DIR, never a sub-folder);
- ``--data-dir``, ``--dataset``, ``--epochs``, ``--seeds``, ``--batch-size``, ``--train-size``,
  ``--n-eval``, ``--device``: the run settings of `benchmark.settings.Settings`;
- ``--storage``, ``--tracking-uri``, ``--study``/``--study-name``: where the study lives.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["HelpFormatter", "add_deprecated_alias", "parse_overrides"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already says its default in
    words (needed where the default is None, i.e. computed: "default: the space's")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower():
            return text
        default = action.default
        if action.required or default is None or default is False or default == []:
            return text
        if default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


class _DeprecatedAlias(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.new_flag = kwargs.pop("new_flag")
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated; use {self.new_flag}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_deprecated_alias(
    parser: argparse.ArgumentParser, old: str, new: str, *, dest: str | None = None
) -> None:
    """`old` sets the same value as `new` (hidden from --help, warns on stderr when used)."""
    parser.add_argument(
        old,
        dest=dest or new.lstrip("-").replace("-", "_"),
        action=_DeprecatedAlias,
        new_flag=new,
        help=argparse.SUPPRESS,
    )


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """--data-dir, with the same look-up text in every command."""
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with one sub-folder per dataset (default: MIXBENCH_DATA, the cache, "
        "/usr/share/datasets, then a download)",
    )


def add_train_size(parser: argparse.ArgumentParser) -> None:
    """--train-size, a seeded subset of the training split, in every command that trains."""
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="use only N training samples, a seeded subset (default: all)",
    )


def parse_overrides(
    items: Sequence[str],
    flag: str = "--param",
    example: str = "alpha=0.3",
    error: type[ValueError] = ValueError,
) -> dict[str, str]:
    """['alpha=0.3', ...] -> {'alpha': '0.3'}; `error` naming `flag` for malformed items."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise error(f"{flag} {item!r} is not of the form name=value (e.g. {example})")
        out[key.strip()] = value.strip()
    return out
