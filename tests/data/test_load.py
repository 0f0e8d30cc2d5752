"""The CSV reader is a parser of hostile input: any text gives a Table or a DataError."""

from __future__ import annotations

import contextlib
import io

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


_FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def _numeric_csv(draw: st.DrawFn) -> tuple[str, int]:
    columns = draw(st.integers(min_value=1, max_value=5))
    rows = draw(st.integers(min_value=1, max_value=30))
    styles = st.sampled_from(["repr", "int", "exp", "spaced", "quoted"])
    lines = [",".join([f"f{i}" for i in range(columns)] + ["label"])]
    for _ in range(rows):
        cells = []
        for _ in range(columns):
            value, style = draw(_FINITE), draw(styles)
            if style == "int":
                cells.append(str(int(value)) if abs(value) < 1e15 else repr(value))
            elif style == "exp":
                cells.append(f"{value:.6e}")
            elif style == "spaced":
                cells.append(f" {value!r}")
            elif style == "quoted":
                cells.append(f'"{value!r}"')
            else:
                cells.append(repr(value))
        cells.append(draw(st.sampled_from(["cat", "dog", "bird"])))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n", columns


@given(_numeric_csv())
@settings(max_examples=150, deadline=None)
def test_csv_reader_agrees_with_pandas(case: tuple[str, int]) -> None:
    """Differential: on well-formed numeric CSV the reader gives pandas' numbers and labels."""
    pd = pytest.importorskip("pandas")
    text, columns = case
    table = read_csv_text(text)
    theirs = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    assert not table.problems
    assert list(table.columns) == [f"f{i}" for i in range(columns)]
    np.testing.assert_array_equal(table.x, theirs[list(table.columns)].to_numpy(np.float64))
    assert table.y is not None
    assert [table.classes[i] for i in table.y] == [str(v) for v in theirs["label"]]
