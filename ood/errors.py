"""Errors a user can cause. The scripts' entry (ood.runtime.entry.cli_main) reports a UserError as one line and
exit status 2; a Python caller (ood.api, a notebook) catches it as any exception."""

from ood._moved import forward

__all__ = ["UserError"]
__getattr__ = forward("ood.errors")  # cli_main and script_run, now in ood.runtime.entry


class UserError(Exception):
    """Bad input from the user (missing data, wrong path, mismatched checkpoint, unknown name).

    The front ends print the message as one paragraph, without a traceback, and exit with status 2.
    """
