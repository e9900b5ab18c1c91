"""Where the Parquet dataset is read from: a local folder or a remote store, as one pyarrow filesystem and
the dataset's root path in it, so that `report` opens a table the same way wherever it is.

A remote parquet_dir is read from the store itself, not from the local staging folder compaction writes:
a user on another machine (a config without that folder) reads the same dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs


@dataclass(frozen=True)
class DatasetRoot:
    fs: pafs.FileSystem
    path: str  # the root inside `fs`: a local folder, or `bucket/prefix` for S3
    label: str  # how messages name it: the folder, or the store's URI (which holds no credentials)

    def __str__(self) -> str:
        return self.label

    def table_path(self, table: str) -> str:
        return f"{self.path}/{table}"

    def has_table(self, table: str) -> bool:
        """Whether the table's folder exists (in an object store: whether any object is under it)."""
        return self.fs.get_file_info(self.table_path(table)).type == pafs.FileType.Directory


def local_root(folder: Path) -> DatasetRoot:
    return DatasetRoot(pafs.LocalFileSystem(), str(folder), str(folder))
