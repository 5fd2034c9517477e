"""Reading landing files: from bytes on disk to typed rows and per-row errors.

Reading is two steps, both in DuckDB (no Python loop per row):

1. :func:`stage_raw` reads a CSV (or Parquet) file as text columns into a staging
   table, numbering the data rows from 1 in file order. Rows that do not parse as CSV
   (too many or too few fields) are kept aside with their line text and the reason.
   File-level problems (not UTF-8, empty, no header, a required column missing, a
   duplicated column) raise :class:`FeedError` and nothing is read.
2. :func:`typed_select` casts the text to the contract's types (exact decimals, real
   dates, booleans in the usual spellings) and lists, for every row, the cells that
   failed with the column and the rule.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from lienwatch.errors import FeedError
from lienwatch.warehouse import sql_type
from transforms.contract import FEEDS, Column, Feed

CHUNK = 1 << 23
HEAD_BYTES = 65536  # the header row is read from this much of the file's start
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
FEED_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class LandingFile:
    """One file of the landing folder, named relative to the folder."""

    feed: Feed
    path: Path
    name: str  # e.g. "payments/payments_2026-11-20.csv"

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() == ".parquet"


@dataclass
class StagedFile:
    """A file read into a staging table: rows read and the rows that did not parse."""

    inspected: Inspected
    table: str
    rows_read: int = 0
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (row, reason, line)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def discover(data: Path) -> list[LandingFile]:
    """The landing folder's files, snapshots first then ledger files in name order.

    A missing required feed, or a feed present both as CSV and Parquet, is a
    :class:`FeedError`.
    """
    if not data.is_dir():
        raise FeedError(str(data), "landing folder not found")
    found: list[LandingFile] = []
    for feed in FEEDS.values():
        if feed.snapshot:
            candidates = [data / f"{feed.name}{suffix}" for suffix in FEED_SUFFIXES]
            present = [p for p in candidates if p.is_file()]
            if len(present) > 1:
                raise FeedError(
                    f"{feed.name}.*", "both a CSV and a Parquet file are present; keep one"
                )
            if not present:
                if feed.required:
                    raise FeedError(f"{feed.name}.csv", "required feed is missing")
                continue
            found.append(LandingFile(feed, present[0], present[0].name))
    ledger = data / "payments"
    if not ledger.is_dir():
        raise FeedError("payments/", "required ledger folder is missing")
    for path in sorted(ledger.iterdir()):
        if path.is_file() and path.suffix.lower() in FEED_SUFFIXES:
            found.append(LandingFile(FEEDS["payments"], path, f"payments/{path.name}"))
    return found


def _check_utf8_and_hash(path: Path, name: str) -> tuple[str, int, bytes]:
    """Hash the file and prove it is UTF-8, in one streaming pass; return its first line."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size, line, head = 0, 1, b""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if not head:
                head = chunk[:HEAD_BYTES]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start : exc.start + 1]
                line += chunk[: exc.start].count(b"\n")
                raise FeedError(
                    name,
                    f"not UTF-8 text: byte 0x{bad.hex()} on line {line} "
                    "(save the file as UTF-8 and drop it again)",
                ) from None
            line += chunk.count(b"\n")
            size += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise FeedError(name, "not UTF-8 text: the file ends inside a character") from None
    return digest.hexdigest(), size, head


def _header(head: bytes, name: str) -> list[str]:
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    try:
        first = next(csv.reader(io.StringIO(text, newline="")), None)
    except csv.Error as exc:
        raise FeedError(name, f"the header row cannot be read as CSV ({exc})") from None
    if not first or not any(cell.strip() for cell in first):
        raise FeedError(name, "no header row")
    return [cell.strip() for cell in first]


def _check_columns(header: list[str], feed: Feed, name: str) -> list[str]:
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise FeedError(name, f"column named twice in the header: {', '.join(duplicated)}")
    if "" in header:
        raise FeedError(name, f"column {header.index('') + 1} of the header has no name")
    missing = [c for c in feed.required_columns if c not in header]
    if missing:
        raise FeedError(name, f"required column missing: {', '.join(missing)}")
    return [c for c in header if c not in feed.column_names]


@dataclass(frozen=True)
class FileStat:
    """What the file system says of a file. While all of it stays the same, so does the
    content: a write changes the change time (ctime), which no tool can set back (the
    check git's index makes). Taken before the file is read, so a write during the read
    shows on the next night."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileStat:
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True)
class Inspected:
    """A landing file that passed the file-level checks, with its hash and header."""

    file: LandingFile
    sha256: str
    bytes: int
    header: tuple[str, ...]
    extra_columns: tuple[str, ...]
    stat: FileStat | None = None


def inspect(file: LandingFile, known: dict[str, tuple[FileStat, str]] | None = None) -> Inspected:
    """File-level checks and the content hash; a :class:`FeedError` names what is wrong.

    ``known`` maps a file's resolved path to its stat and hash when it last passed these
    checks whole: a file whose stat is unchanged keeps that hash, and only its header is
    read again (a landing folder of years of daily files is not re-read every night).
    """
    stat = FileStat.of(file.path)
    seen = (known or {}).get(str(file.path.resolve()))
    sha = seen[1] if seen is not None and seen[0] == stat else None
    if file.is_parquet:
        return _inspect_parquet(file, stat, sha)
    if stat.size == 0:
        raise FeedError(file.name, "empty file: no header row")
    size = stat.size
    if sha is None:
        sha, size, head = _check_utf8_and_hash(file.path, file.name)
    else:
        with file.path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    header = _header(head, file.name)
    extra = _check_columns(header, file.feed, file.name)
    return Inspected(file, sha, size, tuple(header), tuple(extra), stat)


def stage_raw(con: duckdb.DuckDBPyConnection, inspected: Inspected, table: str) -> StagedFile:
    """Read one file as text into the temp table ``table`` (see :func:`stage_files`)."""
    return stage_files(con, [inspected], table)[0]


def stage_files(
    con: duckdb.DuckDBPyConnection, files: list[Inspected], table: str
) -> list[StagedFile]:
    """Read files of one feed as text into temp tables: ``_file`` (the file's place in
    ``files``), ``row_number`` (its data rows numbered from 1 in file order) and one text
    column each. CSV files with the same header are read in one scan into one table
    (``table``, ``table_g1``, ...); a Parquet file has a table of its own."""
    staged: list[StagedFile] = []
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, f in enumerate(files):
        if f.file.is_parquet:
            staged.append(_stage_parquet(con, f, f"{table}_p{position}", position))
        else:
            staged.append(StagedFile(f, ""))
            groups.setdefault(f.header, []).append(position)
    for n, positions in enumerate(groups.values()):
        _stage_csv(
            con, [staged[p] for p in positions], positions, table if n == 0 else f"{table}_g{n}"
        )
    return staged


# Names the scan of several files adds or reads (its virtual columns, the staged table's
# own): a landing file with a column of one of these names is read alone.
_VIRTUAL = {"file_index", "filename", "_file", "row_number"}


def _stage_csv(
    con: duckdb.DuckDBPyConnection, staged: list[StagedFile], positions: list[int], table: str
) -> None:
    """Read CSV files of one header into ``table``, one scan for all of them.

    A scan that fails is repeated file by file, so the error names the file."""
    header = list(staged[0].inspected.header)
    if len(staged) > 1 and _VIRTUAL & set(header):
        for s, position in zip(staged, positions, strict=True):
            _stage_csv(con, [s], [position], f"{table}_f{position}")
        return
    for s in staged:
        s.table = table
    rejects_scan, rejects_table = f"{table}_rs", f"{table}_rt"
    columns = {c: "VARCHAR" for c in header}
    con.execute(f"DROP TABLE IF EXISTS {rejects_table}; DROP TABLE IF EXISTS {rejects_scan}")
    paths = [str(s.inspected.file.path) for s in staged]
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table}_text AS
            SELECT CAST({"file_index" if len(paths) > 1 else "0"} AS INTEGER) AS _file, *
            FROM read_csv($paths, header = true, auto_detect = false, columns = $columns,
                delim = ',', quote = '"', escape = '"', store_rejects = true,
                rejects_scan = '{rejects_scan}', rejects_table = '{rejects_table}',
                max_line_size = 1048576)""",
            {"paths": paths, "columns": columns},
        )
    except duckdb.Error as exc:
        if len(staged) == 1:
            raise FeedError(
                staged[0].inspected.file.name, f"cannot be read as CSV ({_first_line(exc)})"
            ) from None
        for s, position in zip(staged, positions, strict=True):
            _stage_csv(con, [s], [position], f"{table}_f{position}")
        return
    rejected = con.execute(
        f"""SELECT file_id, line - 1 AS row_number, any_value(error_type),
                   any_value(trim(csv_line, e'\\r\\n'))
            FROM {rejects_table} GROUP BY file_id, line ORDER BY file_id, line"""
    ).fetchall()
    accepted = dict(
        con.execute(f"SELECT _file, count(*) FROM {table}_text GROUP BY _file").fetchall()
    )
    for file_id, row, kind, line in rejected:
        staged[file_id].rejects.append((row, _reject_reason(kind, len(header)), line))
    offsets, start, numbers = [], 0, []
    for file_id, s in enumerate(staged):
        offsets.append(start)
        start += accepted.get(file_id, 0)
        s.rows_read = accepted.get(file_id, 0) + len(s.rejects)
        if s.rejects:
            numbers.append((file_id, s.rows_read, [r for r, _, _ in s.rejects]))
    # DuckDB keeps file order (insertion order is preserved): a file's rows follow the
    # files before it, and its accepted rows take the data-row numbers 1..rows_read that
    # its rejected rows do not.
    in_file = "rowid + 1 - $offsets[_file + 1]"  # the row's place among its file's accepted rows
    mapped = ""
    if numbers:
        mapped = f" LEFT JOIN {table}_numbers AS m ON m._file = t._file AND m.pos = t.pos"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table}_numbers AS
            SELECT _file, row_number() OVER (PARTITION BY _file ORDER BY n) AS pos, n AS row_number
            FROM (SELECT unnest($files) AS _file, unnest($totals) AS total,
                         unnest($rejected) AS rejected)
            CROSS JOIN LATERAL (SELECT n FROM range(1, total + 1) AS r(n)) AS r
            WHERE NOT list_contains(rejected, n)""",
            {
                "files": [f for f, _, _ in numbers],
                "totals": [t for _, t, _ in numbers],
                "rejected": [r for _, _, r in numbers],
            },
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT $positions[t._file + 1] AS _file,
               {"coalesce(m.row_number, t.pos)" if numbers else "t.pos"} AS row_number,
               t.* EXCLUDE (_file, pos)
        FROM (SELECT {in_file} AS pos, * FROM {table}_text) AS t{mapped}""",
        {"offsets": offsets, "positions": positions},
    )
    con.execute(f"DROP TABLE {table}_text; DROP TABLE {rejects_table}; DROP TABLE {rejects_scan}")
    con.execute(f"DROP TABLE IF EXISTS {table}_numbers")


def _inspect_parquet(file: LandingFile, stat: FileStat, sha: str | None) -> Inspected:
    sha = sha or file_sha256(file.path)
    try:
        names = [
            r[0]
            for r in duckdb.execute(
                "SELECT name FROM parquet_schema($path) WHERE num_children IS NULL",
                {"path": str(file.path)},
            ).fetchall()
        ]
    except duckdb.Error as exc:
        raise FeedError(file.name, f"cannot be read as Parquet ({_first_line(exc)})") from None
    extra = _check_columns(names, file.feed, file.name)
    return Inspected(file, sha, stat.size, tuple(names), tuple(extra), stat)


def _stage_parquet(
    con: duckdb.DuckDBPyConnection, inspected: Inspected, table: str, position: int
) -> StagedFile:
    casts = ", ".join(f'CAST("{n}" AS VARCHAR) AS "{n}"' for n in inspected.header)
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT {position} AS _file, file_row_number + 1 AS row_number, {casts}
            FROM read_parquet($path, file_row_number = true)""",
            {"path": str(inspected.file.path)},
        )
    except duckdb.Error as exc:
        raise FeedError(
            inspected.file.name, f"cannot be read as Parquet ({_first_line(exc)})"
        ) from None
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return StagedFile(inspected, table, rows)


def _reject_reason(kind: str, expected: int) -> str:
    if kind == "MISSING COLUMNS":
        return f"row has fewer fields than the {expected} columns of the header"
    if kind == "TOO MANY COLUMNS":
        return f"row has more fields than the {expected} columns of the header"
    if kind == "UNQUOTED VALUE":
        return "a quote inside an unquoted field"
    if kind == "LINE SIZE OVER MAXIMUM":
        return "row longer than 1 MiB"
    return f"row cannot be parsed as CSV ({kind.lower()})"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200]


# Numbers are matched whole before they are cast: no rounding, no thousands separators.
NUMBER_FORMATS = {
    "int": (r"[+-]?\d{1,9}", "INTEGER"),
    "money": (r"[+-]?\d{1,12}(\.\d{1,2})?", "DECIMAL(14,2)"),
    "rate": (r"[+-]?\d{1,3}(\.\d{1,6})?", "DECIMAL(9,6)"),
}


def _typed(column: Column, raw: str) -> tuple[str, bool, str]:
    """(typed expression of the text ``raw``, whether it can fail, rule) for one column."""
    if column.kind == "text":
        return raw, False, "type"
    if column.kind in NUMBER_FORMATS:
        pattern, target = NUMBER_FORMATS[column.kind]
        ok = f"regexp_full_match({raw}, '{pattern}')"
        return f"CASE WHEN {ok} THEN CAST({raw} AS {target}) END", True, f"type:{column.kind}"
    if column.kind == "date":
        ok = rf"regexp_full_match({raw}, '\d{{4}}-\d{{2}}-\d{{2}}')"
        return f"CASE WHEN {ok} THEN TRY_CAST({raw} AS DATE) END", True, "type:date"
    if column.kind == "bool":
        word = f"lower({raw})"
        expr = f"CASE WHEN {word} IN {TRUE_WORDS} THEN TRUE WHEN {word} IN {FALSE_WORDS} THEN FALSE END"
        return expr, True, "type:bool"
    raise ValueError(column.kind)


_TYPE_MESSAGES = {
    "type:int": "not a whole number",
    "type:money": "not an amount in dollars with at most 2 decimals",
    "type:rate": "not a percentage with at most 6 decimals",
    "type:date": "not a real date in YYYY-MM-DD form",
    "type:bool": "not true/false (true, false, yes, no, y, n, 1, 0)",
}


def typed_select(feed: Feed, present: list[str], table: str) -> str:
    """SQL selecting ``_file``, ``row_number``, the typed columns and the list of cell
    errors.

    Each error is a struct (column_name, rule, message). A column the file lacks (an
    optional one) is NULL. A cell fails its type when it has text but no typed value (a
    text that passes a column's pattern always casts). Values are not copied into the
    messages: they hold borrowers' data, which stays in the staged text (see
    :func:`raw_select`).
    """
    trimmed, texts, selects, checks = [], [], ["_file", "row_number"], []
    for column in feed.columns:
        if column.name not in present:
            selects.append(f"CAST(NULL AS {sql_type(column)}) AS {column.name}")
            continue
        text = f'"_text_{column.name}"'  # the cell's trimmed text, NULL when empty
        trimmed.append(f"NULLIF(TRIM(\"{column.name}\"), '') AS {text}")
        texts.append(text)
        expr, bad, rule = _typed(column, text)
        selects.append(f"{expr} AS {column.name}")
        if not column.nullable:
            checks.append(
                f"CASE WHEN {text} IS NULL THEN {{'column_name': '{column.name}', 'rule': 'required', "
                f"'message': '{column.name} is empty'}} END"
            )
        if bad:
            checks.append(
                f"CASE WHEN {text} IS NOT NULL AND {column.name} IS NULL THEN "
                f"{{'column_name': '{column.name}', 'rule': '{rule}', "
                f"'message': '{column.name} is {_TYPE_MESSAGES[rule]}'}} END"
            )
    errors = "list_filter([" + ", ".join(checks) + "], lambda e: e IS NOT NULL)" if checks else "[]"
    named = ", ".join(["_file", "row_number", *feed.column_names])
    return (
        f"SELECT {named}, {errors} AS errors FROM ("
        f"SELECT {', '.join(selects + texts)} "
        f"FROM (SELECT {', '.join(['_file', 'row_number', *trimmed])} FROM {table}))"
    )


def raw_select(present: list[str], table: str) -> str:
    """SQL selecting ``_file``, ``row_number`` and the row as it came, as JSON (what
    quarantine keeps of a row)."""
    pairs = ", ".join(f'"{c}" := "{c}"' for c in present)
    return f"SELECT _file, row_number, to_json(struct_pack({pairs})) AS raw FROM {table}"
