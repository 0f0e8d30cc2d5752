"""The CSV reader is a parser of hostile input: any text gives a Table or a DataError."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.data.load import read_csv_text
from atlasguard.errors import DataError

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
    st.sampled_from(["", "1", "0.5", "nan", "inf", "-3e400", '"', "a,b"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cells, min_size=0, max_size=6), min_size=0, max_size=12))
def test_any_table_parses_or_is_refused_clearly(rows: list[list[str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    try:
        table = read_csv_text(buffer.getvalue())
    except DataError as exc:
        assert str(exc)
        return
    assert table.x.ndim == 2
    bad = {p.row for p in table.problems}
    for r in range(len(table.x)):
        assert r in bad or np.isfinite(table.x[r]).all()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    with contextlib.suppress(DataError):
        read_csv_text(text)


def test_labels_keep_their_written_names_in_numeric_order() -> None:
    table = read_csv_text("x,label\n1,10\n2,9\n3,cat\n", labels="label")
    assert table.classes == ("9", "10", "cat") and table.y.tolist() == [1, 0, 2]


def test_a_row_with_the_wrong_width_keeps_its_place() -> None:
    table = read_csv_text("a,b\n1,2\n3\n4,5\n")
    assert [p.row for p in table.problems] == [1] and table.x[2].tolist() == [4.0, 5.0]


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_files_are_refused(text: str) -> None:
    with pytest.raises(DataError, match="no rows"):
        read_csv_text(text)
