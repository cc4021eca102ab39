"""Glob-style matching for push rules (appendices "Glob-style matching").

`*` matches zero or more characters and `?` exactly one; everything else is literal. Matching
is case-insensitive. Two modes (C-S "Push Rules" → `event_match`):

- whole value: the pattern must match the entire string;
- word boundary (`content.body` and content rules): the pattern must match some substring
  that starts and ends at a word boundary — the start or end of the value, or any character
  outside `[A-Za-z0-9_]`.

Patterns are split at `*` into fixed-width segments matched left to right, leftmost first.
That is exact for globs and runs in O(len(value) × len(pattern)), so a user's pattern such as
`*a*a*a*b` cannot make the server backtrack exponentially the way a translated regex would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_NOT_WORD_BEFORE = r"(?<![A-Za-z0-9_])"
_NOT_WORD_AFTER = r"(?![A-Za-z0-9_])"
_FLAGS = re.IGNORECASE | re.DOTALL


def _segment_regex(segment: str, literal: bool) -> str:
    if literal:
        return re.escape(segment)
    return "".join("." if char == "?" else re.escape(char) for char in segment)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled pattern. Build with `compile_glob`; call `matches(value)`."""

    word_boundary: bool
    # Without any `*` the pattern is one segment and `first` is the whole pattern.
    has_star: bool
    first: re.Pattern[str]
    middle: tuple[re.Pattern[str], ...]
    last: re.Pattern[str]
    last_width: int

    def matches(self, value: str) -> bool:
        if self.word_boundary:
            return self._matches_substring(value)
        return self._matches_whole(value)

    def _matches_whole(self, value: str) -> bool:
        if not self.has_star:
            return self.first.fullmatch(value) is not None
        head = self.first.match(value)
        if head is None:
            return False
        position = self._place_middle(value, head.end())
        if position is None:
            return False
        tail_start = len(value) - self.last_width
        return tail_start >= position and self.last.fullmatch(value, tail_start) is not None

    def _matches_substring(self, value: str) -> bool:
        # The leftmost start is always best: later starts only push every segment rightwards.
        head = self.first.search(value)
        if head is None:
            return False
        if not self.has_star:
            return True  # `first` carries both boundary assertions
        position = self._place_middle(value, head.end())
        if position is None:
            return False
        return self.last.search(value, position) is not None

    def _place_middle(self, value: str, position: int) -> int | None:
        for segment in self.middle:
            found = segment.search(value, position)
            if found is None:
                return None
            position = found.end()
        return position


@lru_cache(maxsize=8192)
def compile_glob(pattern: str, *, word_boundary: bool = False, literal: bool = False) -> Glob:
    """Compile `pattern` once; cached, since the same rules run for every event.

    `literal=True` treats `*` and `?` as ordinary characters (used for display names).
    """
    segments = [pattern] if literal else pattern.split("*")
    has_star = len(segments) > 1
    first_re = _segment_regex(segments[0], literal)
    last_re = _segment_regex(segments[-1], literal)
    if word_boundary:
        first_re = _NOT_WORD_BEFORE + first_re
        if has_star:
            last_re = last_re + _NOT_WORD_AFTER
        else:
            first_re = first_re + _NOT_WORD_AFTER
    middle = tuple(
        re.compile(_segment_regex(segment, literal), _FLAGS)
        for segment in segments[1:-1]
        if segment  # `**` is the same as `*`
    )
    return Glob(
        word_boundary=word_boundary,
        has_star=has_star,
        first=re.compile(first_re, _FLAGS),
        middle=middle,
        last=re.compile(last_re, _FLAGS),
        last_width=len(segments[-1]),
    )


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    """Whether `value` matches the glob `pattern` (see the module docstring for the modes)."""
    return compile_glob(pattern, word_boundary=word_boundary).matches(value)
