"""The command-line parser of ekyc-client and ekyc-quality (stdlib only: the client uses it)."""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 1


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors exit 1, like every other error: argparse's 2 (and 3, 4) mean an
    outcome to scripts (ekyc-client: spoof; ekyc-quality: quality failed)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")
