"""Names of earlier releases kept for one more: a renamed method or keyword still works, with a
``DeprecationWarning`` naming the current one."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def warn_renamed(old: str, new: str, since: str, *, stacklevel: int = 3) -> None:
    """The one message: ``old`` is ``new`` since ``since``; the old name goes in the next release."""
    warnings.warn(f"{old} is {new} since lrwa_fast {since}; the old name goes in the next release",
                  DeprecationWarning, stacklevel=stacklevel)


def renamed_method(old: str, new: str, since: str) -> Callable[..., Any]:
    """A method ``old`` for a class body: warns, then calls the method ``new``."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        warn_renamed(f"{type(self).__name__}.{old}", f"{type(self).__name__}.{new}", since)
        return getattr(self, new)(*args, **kwargs)

    method.__name__ = old
    method.__doc__ = f"Deprecated since {since}: :meth:`{new}`."
    return method


def renamed_keyword(old: str, new: str, since: str) -> Callable[[F], F]:
    """Decorator: the keyword argument ``old`` of a function is passed as ``new``, with a warning."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {new}= and its old name {old}=")
                warn_renamed(f"{fn.__name__}({old}=...)", f"{fn.__name__}({new}=...)", since)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
