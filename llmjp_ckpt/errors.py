"""The one exception type that the CLI turns into a single clear line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: the message names the culprit and what was expected."""
