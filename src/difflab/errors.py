"""The one error type that both rooms share (Stable Diffusion and the from-scratch DDPM).

Nothing else lives here, so that any module, `ddpm/` included, may import it without pulling in the other room.
"""


class InputError(ValueError):
    """Bad input from a user: the message names the field, the value and what is allowed.

    The CLI prints it as one line and exits with status 2.
    """
