"""The book builds, strictly, from the committed records alone."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quantlib.io import paths
from quantlib.reporting import report


def test_committed_summary_covers_the_default_grid():
    df = report.summary(scope="default")
    assert (df["status"] == "done").all(), df.loc[df["status"] != "done", ["run", "error"]]
    assert set(df["run"]) == report.scope_runs("default")  # every cell of the default grids, recorded
    assert set(df["label"]) >= {"bnb-int8", "bnb-nf4", "gptq-8b", "gptq-4b", "gptq-3b", "gptq-2b"}
    for run in df["run"]:
        assert (paths.RUNS / run / "run.ipynb").exists()


@pytest.mark.slow
def test_book_builds_strictly_from_committed_records(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(paths.BOOK, book, ignore=shutil.ignore_patterns("_build", "runs"))
    subprocess.run([sys.executable, "-m", "quantlib.reporting.book_runs"], check=True, cwd=paths.ROOT)
    shutil.copytree(paths.BOOK / "runs", book / "runs")
    jb = Path(sys.executable).parent / "jupyter-book"
    out = subprocess.run([str(jb), "build", str(book), "-n", "-W", "--keep-going"],
                         capture_output=True, text=True, cwd=paths.ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    html = book / "_build" / "html"
    assert (html / "index.html").exists()
    # each has a captioned figure naming its maker
    for page in ("knowledge", "alignment", "perplexity", "efficiency", "spqr"):
        text = (html / f"{page}.html").read_text()
        assert "<img" in text and "Made by" in text and f"book/{page}.md" in text
    executed = [r for r in report.summary()["run"] if (paths.RUNS / r / "run.ipynb").exists()]
    assert len(list((html / "runs").glob("*.html"))) == len(executed)  # a run in progress has none yet
    assert len(list((html / "_images").glob("*.png"))) >= 3
    # the front page carries the claims table, each verdict computed
    index = (html / "index.html").read_text()
    assert index.count("holds") + index.count("inconclusive") >= 5
    # as a reader sees it: every page in headless Chromium (skipped where Chromium is not installed)
    from quantlib.reporting import check_html

    if not Path(check_html.DRIVER).exists():
        pytest.skip("Chromium is not installed (make browser)")
    assert check_html.main([str(html), "--screenshots", str(tmp_path / "shots")]) == 0
    assert len(list((tmp_path / "shots").glob("*.png"))) >= 7


def test_pdf_tables_are_list_tables_with_literal_text():
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"label": ["fp32", "gptq-4b"], "ppl": [12.3456, np.nan],
                       "prompt": ["Q: {{q}}\nA:", "$18 <|im_start|>"]})
    md = report._styler_markdown(df.style.format(precision=2, na_rep="").hide(axis="index"))
    lines = md.splitlines()
    assert lines[0] == "```{list-table}" and lines[1] == ":header-rows: 1" and lines[-1] == "```"
    assert lines[2] == ":class: longtable"  # breaks between rows at a page's end
    assert len(lines[3].split()) == 4  # ":widths:" and one width per column
    assert "* - fp32" in lines and "  - 12\\.35" in lines  # formatted by the Styler, index hidden
    assert "  - Q\\: \\{\\{q\\}\\} A\\:" in lines  # newline folded, punctuation escaped
    assert "  - \\$18 \\<\\|im\\_start\\|\\>" in lines  # no math, no HTML


def test_appendix_copies_are_rewritten_only_when_changed(tmp_path, monkeypatch):
    import json
    import os

    from quantlib.reporting import book_runs
    from quantlib.running import records

    runs, book = tmp_path / "runs", tmp_path / "book"
    monkeypatch.setattr(paths, "RUNS", runs)
    monkeypatch.setattr(paths, "BOOK", book)
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "x"}], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.ipynb").write_text(json.dumps(nb))
        records.set_status(runs / name, "done")
    book_runs.main()
    copy = book / "runs" / "a.ipynb"
    os.utime(copy, (0, 0))
    (book / "runs" / "gone.ipynb").write_text("{}")
    book_runs.main()
    assert copy.stat().st_mtime == 0  # unchanged content: not rewritten, so Sphinx does not re-read it
    assert sorted(p.name for p in (book / "runs").iterdir()) == ["a.ipynb", "b.ipynb"]
    records.set_status(runs / "a", "failed")
    book_runs.main()
    assert copy.stat().st_mtime > 0 and book_runs.FAILED_NOTE in copy.read_text()  # its traceback is expected
    assert book_runs.FAILED_NOTE not in (book / "runs" / "b.ipynb").read_text()


def test_appendix_pages_hide_the_building_machines_folders_and_are_titled_readably(tmp_path, monkeypatch):
    import json

    from quantlib.reporting import book_runs
    from quantlib.running import records

    runs, book = tmp_path / "runs", tmp_path / "book"
    monkeypatch.setattr(paths, "RUNS", runs)
    monkeypatch.setattr(paths, "BOOK", book)
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "x"},
                    {"cell_type": "code", "metadata": {}, "source": 'run_dir = "/tmp/cold/data/runs/r"',
                     "outputs": [{"output_type": "stream", "name": "stderr",
                                  "text": "/home/u/repo/.venv/lib/a.py:1\n"}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (runs / "r").mkdir(parents=True)
    (runs / "r" / "run.ipynb").write_text(json.dumps(nb))
    (runs / "r" / "spec.json").write_text(json.dumps({"title": "SpQR 2-bit, no outliers", "model": "m"}))
    records.set_status(runs / "r", "done")
    book_runs.main()
    text = (book / "runs" / "r.ipynb").read_text()
    assert "/tmp/cold" not in text and "/home/u" not in text and "<repo>/data/runs/r" in text
    assert "# SpQR 2-bit, no outliers (m)" in text and "override the defaults" in text


def test_pdf_has_every_chapter_but_the_run_notebooks():
    import yaml

    book = paths.ROOT / "book"
    chapters = [c["file"] for c in yaml.safe_load((book / "_toc.yml").read_text())["chapters"]]
    pdf = [c["file"] for c in yaml.safe_load((book / "_toc_pdf.yml").read_text())["chapters"]]
    assert pdf == [c for c in chapters if c != "appendix"]  # the study leads the PDF as it leads the book
