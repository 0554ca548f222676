"""The exception the C++ extension raises (defined in Python so it pickles and subclasses)."""


class LifelineError(Exception):
    """A lifeline error: `code` (for example "system", "invalid_argument",
    "refused_by_kernel") and the library's message, which names the option or
    value at fault."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
