"""Copy each run's executed notebook into book/runs/ for the appendix, titled by its run name."""
from __future__ import annotations

import json
import shutil

from . import paths, records


def main() -> None:
    target = paths.BOOK / "runs"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for nb_path in sorted(paths.RUNS.glob("*/run.ipynb")):
        folder = nb_path.parent
        nb = json.loads(nb_path.read_text())
        state = records.status(folder) or "unknown"
        nb["cells"][0] = {"cell_type": "markdown", "metadata": {}, "id": "run-title",
                          "source": f"# {folder.name}\n\nStatus: **{state}**. The executed notebook of this run, "
                                    f"as recorded in `data/runs/{folder.name}/run.ipynb`."}
        (target / f"{folder.name}.ipynb").write_text(json.dumps(nb, indent=1))


if __name__ == "__main__":
    main()
