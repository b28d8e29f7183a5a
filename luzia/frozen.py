"""`@frozen`: a frozen dataclass whose __init__, equality, hash, repr and frozenness come
from one base class.

Every method a dataclass generates is an `exec` of generated source (a frozen one has six:
__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__). The CLI's submit path
builds the config's classes on every run, so `Frozen` writes all six once, generically,
and `dataclasses.dataclass` generates none: it only records the fields, which
`dataclasses.fields`, `replace` and `asdict` read as for any dataclass. A config is built
a few dozen objects at a time, so a generic __init__'s cost per object does not count.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar, dataclass_transform

_MISSING = dataclasses.MISSING


class Frozen:
    """Base of the `@frozen` classes: built, compared, hashed and printed by field values;
    setting or deleting an attribute raises dataclasses.FrozenInstanceError."""

    _names: ClassVar[tuple[str, ...]] = ()
    _inits: ClassVar[tuple[tuple[str, Any, Any], ...]] = ()   # (name, default, factory)
    __dataclass_fields__: ClassVar[dict[str, Any]]   # set by @frozen; declared for type checkers

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        inits = self._inits
        if len(args) > len(inits):
            raise TypeError(f"{self.__class__.__qualname__}() takes {len(inits)} positional "
                            f"arguments but {len(args)} were given")
        put = object.__setattr__
        for i, (name, default, factory) in enumerate(inits):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{self.__class__.__qualname__}() got multiple values "
                                    f"for argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif factory is not _MISSING:
                value = factory()
            elif default is not _MISSING:
                value = default
            else:
                raise TypeError(f"{self.__class__.__qualname__}() missing required "
                                f"argument: {name!r}")
            put(self, name, value)
        if kwargs:
            raise TypeError(f"{self.__class__.__qualname__}() got an unexpected keyword "
                            f"argument {next(iter(kwargs))!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names)
        return f"{self.__class__.__qualname__}({args})"


F = TypeVar("F", bound=Frozen)


# dataclass_transform: type checkers read an @frozen class's fields as a dataclass's
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[F]) -> type[F]:
    """A frozen dataclass of `cls` (a Frozen subclass) with Frozen's methods."""
    if cls.__doc__ is None:
        cls.__doc__ = cls.__name__   # else dataclass builds one from inspect.signature
    cls = dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
    fields = dataclasses.fields(cls)
    cls._names = tuple(f.name for f in fields)
    cls._inits = tuple((f.name, f.default, f.default_factory) for f in fields if f.init)
    return cls
