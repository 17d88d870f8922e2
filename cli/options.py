"""Options shared by several commands, declared once so their meaning and help text cannot drift."""

from __future__ import annotations

import click

#: Every command that writes a named output file refuses to replace an existing one without it.
force_option = click.option("--force", is_flag=True, help="Replace output files that already exist.")
