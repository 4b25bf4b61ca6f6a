"""Copy each run's executed notebook into book/runs/ for the appendix, titled by its run name.

Repeated log lines (a library warning printed once per matrix product fills an LLM.int8() run's
notebook with tens of thousands of identical lines) are shown once with their count; the record
in data/runs keeps the notebook exactly as executed."""
from __future__ import annotations

import json
import re
from collections import Counter

from quantlib.io import paths
from quantlib.running import records


def collapse_streams(cell: dict) -> dict:
    """One stream output per stream name, each distinct line once, with '[xN]' where it repeated."""
    streams, others = {}, []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            streams.setdefault(o["name"], []).extend("".join(o["text"]).splitlines())
        else:
            others.append(o)
    merged = []
    for name, lines in streams.items():
        counts = Counter(lines)
        text = [f"{line}   [x{counts[line]}]" if counts[line] > 1 else line for line in dict.fromkeys(lines)]
        merged.append({"output_type": "stream", "name": name, "text": "\n".join(text) + "\n"})
    return {**cell, "outputs": merged + others} if "outputs" in cell else cell


# an absolute folder of the machine that built a record, before a folder of the project
_MACHINE_PATH = re.compile(r"(?:/[\w.+-]+)+?/(?=(?:data/runs|notebooks|quantlib|\.venv|\.cache)/)")


def scrub(text: str) -> str:
    """The notebook's text with the building machine's folders replaced by `<repo>/`."""
    return _MACHINE_PATH.sub("<repo>/", text)


# said on the page of a run whose last sitting failed: its traceback is the record, not a broken page
FAILED_NOTE = "This sitting failed: the error that stopped it is shown in the cell where it occurred."


def main() -> None:
    """Writes only notebooks whose content changed (Sphinx re-reads a file whenever it is rewritten,
    which made a warm `make book` re-read every run), and removes those of runs no longer recorded."""
    target = paths.BOOK / "runs"
    target.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for nb_path in sorted(paths.RUNS.glob("*/run.ipynb")):
        folder = nb_path.parent
        nb = json.loads(nb_path.read_text())
        state = records.status(folder) or "unknown"
        spec = json.loads((folder / "spec.json").read_text()) if (folder / "spec.json").exists() else {}
        title = f"{spec.get('title') or folder.name} ({spec.get('model', '?')})"
        nb["cells"][0] = {"cell_type": "markdown", "metadata": {}, "id": "run-title",
                          "source": f"# {title}\n\nRun `{folder.name}`, status **{state}**: the executed notebook "
                                    f"as recorded in `data/runs/{folder.name}/run.ipynb`. The cell tagged "
                                    "`injected-parameters` (after the `parameters` cell) holds this run's values; "
                                    "they override the defaults above it."
                                    + (f"\n\n{FAILED_NOTE}" if state == "failed" else "")}
        nb["cells"] = [collapse_streams(c) for c in nb["cells"]]
        out, text = target / f"{folder.name}.ipynb", scrub(json.dumps(nb, indent=1))
        wanted.add(out.name)
        if not out.exists() or out.read_text() != text:
            out.write_text(text)
    for stale in set(p.name for p in target.glob("*.ipynb")) - wanted:
        (target / stale).unlink()


if __name__ == "__main__":
    main()
