"""The exceptions trio_asgi raises, each naming who is at fault: the peer, the app or the user."""

from __future__ import annotations


class ClientDisconnected(OSError):
    """``send()`` was called after the peer went away.

    ASGI spec 2.4 asks for a server-specific ``OSError`` subclass here, so that apps can tell
    "the client left" from their own bugs. The server expects it to escape the app and never
    logs it as an error.
    """


class ASGIProtocolError(RuntimeError):
    """The application sent a message that is malformed or not allowed in the current state.

    Raised out of ``send()``; the connection is closed because its state is no longer known.
    """


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


class AppLoadError(Exception):
    """The ``module:attribute`` target could not be imported or is not an application."""


class StartupFailed(RuntimeError):
    """The application's lifespan startup failed; the server never accepted a connection."""


def only_client_disconnects(exc: BaseException) -> bool:
    """The exception (or every leaf of an exception group) is a ``ClientDisconnected``:
    the client left, which is not an application error."""
    if isinstance(exc, ClientDisconnected):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(ClientDisconnected)[1] is None
    return False


class BindError(OSError):
    """A listening socket could not be set up; the message names the bind and the reason."""
