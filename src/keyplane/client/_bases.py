"""What the resource mixins of ``Client`` and ``AsyncClient`` need from the client itself.

The clients are split into one mixin per resource family (to keep modules small); these
bases only declare, for the type checker, the private helpers the clients define.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from keyplane.client._core import Call, Page

T = TypeVar("T")


class SyncBase:
    """Declares ``Client``'s helpers for its mixins; ``Client`` implements them."""

    # Declarations only: at run time nothing here may shadow the client's own methods.
    if TYPE_CHECKING:

        def _execute(self, call: Call[T]) -> T: ...

        def _pages(self, fetch: Callable[[int], Call[Page[T]]]) -> Iterator[T]: ...

        def _own_tenant_uid(self) -> str: ...


class AsyncBase:
    """Declares ``AsyncClient``'s helpers for its mixins; ``AsyncClient`` implements them."""

    # Declarations only: at run time nothing here may shadow the client's own methods.
    if TYPE_CHECKING:

        async def _execute(self, call: Call[T]) -> T: ...

        def _pages(self, fetch: Callable[[int], Call[Page[T]]]) -> AsyncIterator[T]: ...

        async def _own_tenant_uid(self) -> str: ...
