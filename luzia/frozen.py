"""`@frozen`: a frozen dataclass whose equality, hash and repr come from one base class.

Every method a dataclass generates is an `exec` of generated source; a frozen one has six.
The CLI's submit path builds the protocol's and the config's classes on every run, so
`Frozen` writes `__eq__`, `__hash__` and `__repr__` once and each class generates only its
`__init__` and the frozen `__setattr__`/`__delattr__` (half the import time of those modules).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar, dataclass_transform


class Frozen:
    """Base of the `@frozen` classes: compares, hashes and prints by field values."""

    _names: ClassVar[tuple[str, ...]] = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]   # set by @frozen; declared for type checkers

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
    """A frozen dataclass of `cls` (a Frozen subclass) with Frozen's equality, hash and repr."""
    cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    cls._names = tuple(f.name for f in dataclasses.fields(cls))
    return cls
