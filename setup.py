"""Build step that pyproject.toml cannot express: ship the top-level data/ folder.

data/ sits beside mrs_tui/ (the layout the project chose), so it is no package of its own.
A wheel carries it as mrs_tui/_data/, where `mrs_tui.paths.shipped_data_dir` finds it; a
source checkout and an editable install read data/ where it is.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = Path(__file__).resolve().parent / "data"


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for source in sorted(DATA.rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                target = Path(self.build_lib) / "mrs_tui" / "_data" / source.relative_to(DATA)
                self.mkpath(str(target.parent))
                self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildWithData})
