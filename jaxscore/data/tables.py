"""Per-stimulus CSV tables (image labels, stimulus-set metadata), read strictly.

A table is UTF-8 text (a byte-order mark, as spreadsheet programs write it, is
accepted) with a header row; every other row has exactly as many cells as the
header. Blank lines are skipped. Problems name the argument, the file and the
line, so that a user can open the file at the faulty row.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Table:
  """The rows of a CSV file.

  Attributes:
    path: the file.
    argument: the argument that named the file, e.g. ``"labels"``.
    columns: the header's column names.
    rows: (n_rows,) ``{column: cell}`` per row.
    lines: (n_rows,) the line of the file each row ends on (header: line 1).
  """

  path: Path
  argument: str
  columns: tuple[str, ...]
  rows: tuple[dict[str, str], ...]
  lines: tuple[int, ...]

  def column(self, name: str) -> list[str]:
    """The cells of column ``name``, none of which may be empty."""
    cells = [row[name] for row in self.rows]
    empty = [line for line, cell in zip(self.lines, cells, strict=True) if not cell]
    if empty:
      raise ValueError(
        f"{self.argument} {self.path} has {len(empty)} empty cells in column "
        f"{name!r}, e.g. on line {empty[0]} (header: line 1); every row needs "
        f"a value there."
      )
    return cells


def read_table(path: str | Path, *, argument: str) -> Table:
  """Reads a CSV file with a header row.

  Args:
    path: the file.
    argument: the name of the argument that gave ``path``, for errors.

  Raises:
    ValueError: naming ``argument`` and ``path`` when the file does not
      exist, is not UTF-8 CSV, or has a row whose length differs from the
      header's (with its line).
  """
  path = Path(path)
  if not path.is_file():
    raise ValueError(
      f"{argument} {path} does not exist or is not a file; expected a CSV file."
    )
  try:
    with path.open(newline="", encoding="utf-8-sig") as handle:
      reader = csv.reader(handle)
      header = next(reader, [])
      rows, lines = [], []
      for cells in reader:
        if not cells:
          continue  # a blank line
        if len(cells) != len(header):
          raise ValueError(
            f"{argument} {path} has {len(cells)} cells on line "
            f"{reader.line_num} (header: line 1), but its header has "
            f"{len(header)} columns ({', '.join(header)}); every row needs one "
            "cell per column."
          )
        rows.append(dict(zip(header, cells, strict=True)))
        lines.append(reader.line_num)
  except UnicodeDecodeError as e:
    raise ValueError(
      f"{argument} {path} is not UTF-8 text ({e}); expected a CSV file saved as UTF-8."
    ) from e
  except csv.Error as e:
    raise ValueError(f"{argument} {path} cannot be read as CSV: {e}") from e
  if not header:
    raise ValueError(f"{argument} {path} is empty; expected a header row.")
  repeated = sorted({c for c in header if header.count(c) > 1})
  if repeated:
    raise ValueError(
      f"{argument} {path} names columns {repeated} more than once in its "
      "header; column names must be unique."
    )
  return Table(path, argument, tuple(header), tuple(rows), tuple(lines))
