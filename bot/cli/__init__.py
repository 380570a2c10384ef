"""The `cyto` command line: parsing, a call to the session (`bot.api.Cyto`) and rendering, one module
per command group. Importing the package registers every command on the `cli` group.

Exit codes: 0 every analysis succeeded, 1 some analyses failed, 2 a usage or configuration error.
"""

from __future__ import annotations

from bot.cli import batches, demo, fasta, ledger, results, runs, service
from bot.cli.app import cli
from bot.cli.service import doctor, serve

__all__ = ["batches", "cli", "demo", "doctor", "fasta", "ledger", "main", "results", "runs", "serve", "service"]


def main() -> None:
    cli(prog_name="cyto")
