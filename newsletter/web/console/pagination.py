"""Every console list is paginated the same way: ``?page=N``, a fixed page size, and a
``Pages`` the template macro ``console/_pagination.html`` draws (previous / next links that
keep the list's filters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query

PER_PAGE = 25
# A page number far past the end answers an empty page, not a huge OFFSET scan.
MAX_PAGE = 10_000
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]


@dataclass(frozen=True)
class Pages:
    number: int
    total: int  # items over all pages
    per_page: int = PER_PAGE
    params: tuple[tuple[str, str], ...] = ()  # the filters the links keep
    # A page with two lists names each one's page parameter and navigation apart; a list
    # in an editor's order rather than by time says "Previous" and "Next".
    key: str = "page"
    label: str = "Pages"
    words: tuple[str, str] = ("Newer", "Older")

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def previous(self) -> str | None:
        return self._link(self.number - 1) if self.number > 1 else None

    @property
    def next(self) -> str | None:
        return self._link(self.number + 1) if self.number < self.count else None

    def _link(self, number: int) -> str:
        return "?" + urlencode([*(p for p in self.params if p[1]), (self.key, str(number))])
