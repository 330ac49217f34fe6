"""The exception types a user sees as one line.

Anything raised as ``InputError`` (bad input: exit status 2) or ``RunStopped`` (a run that could not go on:
a non-finite loss, SIGTERM, a logger that cannot start; its own exit status) reaches the user as a single
line (``error: …``) from the CLI, without a traceback; ``INR_LIGHTNING_TRACEBACK=1`` shows the full
traceback instead.
"""


class InputError(ValueError):
    """A config value, file or checkpoint that cannot be used; the message names it and what is allowed."""

    # The most recent message.  jsonargparse folds exceptions raised while it instantiates classes into
    # one long text without keeping the exception object; the CLI finds our sentence in it by this.
    last_message: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        InputError.last_message = message


class RunStopped(RuntimeError):
    """A run stopped before its end; the message says why, at which step, and what was kept."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_choice(name: str, value, allowed: tuple) -> None:
    """``value`` must be one of ``allowed`` (the ``Literal`` of the signature, which jsonargparse checks when it
    parses a config; this is the same rule for Python callers)."""
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def find_user_error(ex: BaseException | None) -> InputError | RunStopped | None:
    """The ``InputError`` or ``RunStopped`` behind an exception (following its chain), if any."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        if isinstance(ex, (InputError, RunStopped)):
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or ex.__context__
    return None


def one_line(message: str, ex: BaseException | None = None) -> str:
    """The sentence a user needs from a parser failure: our own error if one caused it, else the
    parser's first line and its first listed reason."""
    cause = find_user_error(ex)
    if cause is not None:
        return str(cause)
    if InputError.last_message and InputError.last_message in message:
        return InputError.last_message
    lines = [raw.strip() for raw in message.splitlines() if raw.strip()]
    if not lines:
        return message
    # Follow the first line through the reasons it announces (lines ending in ':'), bullets included.
    parts, i = [lines[0]], 0
    while parts[-1].endswith(":") and i + 1 < len(lines):
        i += 1
        parts.append(lines[i].removeprefix("- "))
    return " ".join(parts) + " (--help lists the accepted options)"
