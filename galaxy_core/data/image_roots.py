"""Where a prepared folder's images live: one folder, or one folder per source.

A dataset made of several surveys (the GZ1 cutouts in ``../shared/data``, the GZ2 set written
out under ``~/galaxy-data``) has no common image folder. Its table names each image as
``<source>/<file>``, and the summary maps each source to its folder. Every reader resolves a
name here, so a name from an edited table can never reach outside the folder it claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from galaxy_core.io_utils import resolve_inside


@dataclass(frozen=True)
class ImageRoots:
    """Resolved image folders, by source name (``""`` for a single-folder dataset).

    Frozen and made of paths only, so worker processes receive it pickled with each chunk.
    """

    folders: tuple[tuple[str, Path], ...]

    @classmethod
    def single(cls, folder: str | Path) -> ImageRoots:
        return cls((("", Path(folder).resolve()),))

    @classmethod
    def by_source(cls, folders: dict[str, str | Path]) -> ImageRoots:
        return cls(tuple((name, Path(path).resolve()) for name, path in folders.items()))

    @property
    def is_single(self) -> bool:
        return len(self.folders) == 1 and self.folders[0][0] == ""

    def resolve(self, name: object) -> Path | None:
        """The file a table's image name points at, or None when the name is not text, names
        no known source, or reaches outside its folder."""
        if not isinstance(name, str) or not name:
            return None
        if self.is_single:
            return resolve_inside(self.folders[0][1], name)
        source, _, rest = name.partition("/")
        for known, folder in self.folders:
            if known == source and rest:
                return resolve_inside(folder, rest)
        return None

    def describe(self) -> str:
        """The folders for a message: one path, or ``name: path`` pairs."""
        if self.is_single:
            return str(self.folders[0][1])
        return ", ".join(f"{name}: {path}" for name, path in self.folders)

    def missing(self) -> list[str]:
        """Folders that do not exist on this machine (a GZ2 folder on a fresh clone)."""
        return [str(path) for _, path in self.folders if not path.is_dir()]
