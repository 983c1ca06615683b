"""The suite's own order: the files conftest.py hands out first exist and run first."""

from __future__ import annotations

from pathlib import Path

import conftest

REPO = Path(__file__).resolve().parent.parent


def test_every_longest_first_name_is_a_test_file_once():
    names = conftest.LONGEST_FIRST
    assert len(set(names)) == len(names)
    assert [n for n in names if not (REPO / n).is_file()] == []


def test_longest_first_files_lead_and_each_file_stays_whole(request):
    files = [item.nodeid.split("::")[0] for item in request.session.items]
    seen: list[str] = []
    for name in files:  # whole: a file's tests are contiguous
        if not seen or seen[-1] != name:
            assert name not in seen, name
            seen.append(name)
    collected = [n for n in conftest.LONGEST_FIRST if n in seen]
    assert seen[: len(collected)] == collected
