"""User-facing errors.

Every problem a user can fix (bad file, wrong checkpoint, bad argument) raises a subclass of
:class:`UserError` whose message says what is wrong and what to do. The CLI shows the message
alone, never a traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message is shown verbatim."""


class InputFileError(UserError):
    """An input image, video or annotation file is missing, unreadable, corrupt or out of limits."""


class CheckpointError(UserError):
    """A model folder or checkpoint file is missing, of the wrong type, or does not match the model."""


class TextInputError(UserError):
    """Text input is empty or otherwise unusable."""
