# CAMERAS reproduction: the two commands a newcomer needs are `make book` and `make test`.
# Each one sets up what it needs (a venv in .venv, the pinned requirements, the package in
# editable mode, a Jupyter kernel named `cameras`) and does it only once: a stamp file in
# the venv records the install, and it is redone when requirements.txt or pyproject.toml
# change.
#
#   make book                  execute every chapter listed in _toc.yml with papermill
#                              (PROFILE=offline), then build _build/html strictly (-W)
#   make book PROFILE=ci       the same with the quick CI profile
#   make test                  ruff + pytest tests/ + every chapter under nbval (CAMERAS_PROFILE=ci)
#   make help                  all targets

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.cameras-install.stamp
KERNEL   := $(VENV)/share/jupyter/kernels/cameras/kernel.json
PROFILE  ?= offline
EXECUTED := book/_executed
BUILDDIR := _build
HTML     := $(BUILDDIR)/html
MATHJAX_SPEC ?= mathjax@3
MATHJAX  := book/_static/mathjax/tex-mml-chtml.js

# Chapters are the notebooks that _toc.yml lists as `- file: book/_executed/<name>`.
# Adding a chapter to the book (and to `make test`) is one line in _toc.yml.
CHAPTERS     := $(shell sed -n 's|^[[:space:]]*-[[:space:]]*file:[[:space:]]*book/_executed/\([A-Za-z0-9_.-]*\).*|\1|p' _toc.yml)
SOURCE_NBS   := $(CHAPTERS:%=notebooks/%.ipynb)
EXECUTED_NBS := $(CHAPTERS:%=$(EXECUTED)/%.ipynb)
PACKAGE_SRC  := $(shell find cameras -name '*.py' 2>/dev/null)

# Headless matplotlib for scripts and tests. The `cameras` kernel overrides it with the
# inline backend (see the kernel target) so notebook figures are still captured.
export MPLBACKEND ?= Agg
# Silence jupyter_core's platformdirs deprecation notice.
export JUPYTER_PLATFORM_DIRS ?= 1

PIP_FLAGS := --progress-bar off

.PHONY: help setup kernel mathjax execute check-data book html check-offline check-html screenshots test lint pytest nbval \
        print-chapters clean clean-book distclean FORCE

help:
	@echo "make book [PROFILE=offline|ci|paper]  execute chapters with papermill, build $(HTML)/index.html"
	@echo "make test                             ruff + pytest tests/ + nbval on every chapter (CAMERAS_PROFILE=ci)"
	@echo "make setup                            only create .venv, install requirements + package, register kernel"
	@echo "make execute                          only run papermill on the chapters"
	@echo "make html                             only run jupyter-book on what is already executed"
	@echo "make check-offline                    check the built HTML loads nothing from a CDN"
	@echo "make check-html                       check the built HTML: no absolute paths, no NaN, captioned figures"
	@echo "make screenshots                      screenshots of every page (1400 and 400 px) in _build/screenshots"
	@echo "make print-chapters                   list the chapters _toc.yml names"
	@echo "make clean | clean-book | distclean   remove _build | _build + executed chapters | also .venv, MathJax"

# ---------------------------------------------------------------------------- set-up
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -r requirements.txt
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $@

# The kernel papermill (-k cameras) and nbval (--nbval-kernel-name cameras) start. Its env
# forces the inline backend, so MPLBACKEND=Agg in the calling shell cannot swallow figures.
$(KERNEL): $(STAMP)
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name cameras \
	    --display-name "Python (cameras)" \
	    --env MPLBACKEND module://matplotlib_inline.backend_inline
	touch $@

setup: $(STAMP) $(KERNEL)
kernel: $(KERNEL)

# ---------------------------------------------------------------------------- MathJax
# MathJax 3 comes from the npm registry once and is served from _static, so the pages
# render math with no CDN. Only es5/ (the browser bundle) is kept.
$(MATHJAX):
	@command -v npm >/dev/null || { echo "ERROR: npm is needed once to fetch $(MATHJAX_SPEC) (apt-get install npm)" >&2; exit 1; }
	rm -rf $(BUILDDIR)/mathjax-pkg && mkdir -p $(BUILDDIR)/mathjax-pkg
	cd $(BUILDDIR)/mathjax-pkg && npm pack --silent $(MATHJAX_SPEC) --pack-destination . >/dev/null
	tar -xzf $(BUILDDIR)/mathjax-pkg/mathjax-*.tgz -C $(BUILDDIR)/mathjax-pkg package/es5 package/LICENSE package/package.json
	rm -rf book/_static/mathjax && mkdir -p book/_static
	mv $(BUILDDIR)/mathjax-pkg/package/es5 book/_static/mathjax
	cp $(BUILDDIR)/mathjax-pkg/package/LICENSE $(BUILDDIR)/mathjax-pkg/package/package.json book/_static/mathjax/
	test -f $@

mathjax: $(MATHJAX)

# ---------------------------------------------------------------------------- chapters
# The profile the chapters were executed with; rewritten (and so re-executing them) only
# when PROFILE changes.
$(EXECUTED)/.profile: FORCE
	@mkdir -p $(EXECUTED)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(PROFILE)" ]; then echo "$(PROFILE)" > $@; fi

notebooks/%.ipynb:
	@echo "ERROR: _toc.yml lists book/_executed/$* but notebooks/$*.ipynb does not exist" >&2; exit 1

# papermill writes next to the target first; a failing chapter is kept as *.FAILED.ipynb
# (with the error cell) and stops the build with papermill's error.
$(EXECUTED)/%.ipynb: notebooks/%.ipynb $(EXECUTED)/.profile $(PACKAGE_SRC) $(STAMP) $(KERNEL)
	@mkdir -p $(EXECUTED)
	@rm -f $(EXECUTED)/$*.FAILED.ipynb
	@echo "== papermill $< -> $@ (PROFILE=$(PROFILE))"
	@start=$$(date +%s); \
	if CAMERAS_PROFILE=$(PROFILE) $(BIN)/papermill $< $(EXECUTED)/$*.partial.ipynb \
	      -k cameras --cwd notebooks -p PROFILE $(PROFILE); then \
	    $(BIN)/python book/scripts/tag_cells.py $(EXECUTED)/$*.partial.ipynb; \
	    mv $(EXECUTED)/$*.partial.ipynb $@; \
	    echo "== $* executed in $$(( $$(date +%s) - start )) s"; \
	else \
	    rm -f $@; mv -f $(EXECUTED)/$*.partial.ipynb $(EXECUTED)/$*.FAILED.ipynb 2>/dev/null || true; \
	    echo "ERROR: chapter $* failed (PROFILE=$(PROFILE)); executed copy: $(EXECUTED)/$*.FAILED.ipynb" >&2; \
	    exit 1; \
	fi

execute: $(EXECUTED_NBS)

# The chapters and the tests read the 1000-image ImageNet sample (never copied into the repo).
SAMPLE := $(or $(CAMERAS_IMAGENET_SAMPLE),../shared/data/imagenet-sample)
check-data:
	@test -d "$(SAMPLE)" || { echo "make: no ImageNet sample at $(SAMPLE) (1000 images, file i = class i): set CAMERAS_IMAGENET_SAMPLE to its folder" >&2; exit 2; }

# ---------------------------------------------------------------------------- book
html: setup $(MATHJAX)
	rm -rf $(HTML)
	$(BIN)/jupyter-book build . --all -W --keep-going
	$(BIN)/python book/scripts/check_offline.py $(HTML)
	$(BIN)/python book/scripts/check_html.py $(HTML)

book: check-data setup $(MATHJAX) $(EXECUTED_NBS)
	@$(MAKE) --no-print-directory html
	@echo "Book: $(HTML)/index.html  (chapters: $(CHAPTERS); PROFILE=$(PROFILE))"

check-offline:
	$(BIN)/python book/scripts/check_offline.py $(HTML)

# What a reader sees: no absolute paths, no NaN in tables, every figure captioned.
check-html:
	$(BIN)/python book/scripts/check_html.py $(HTML)

# Screenshots of every page at 1400 px and 400 px into _build/screenshots/ for review
# (needs Debian's chromium: apt-get install chromium).
screenshots:
	rm -rf $(BUILDDIR)/screenshots
	$(BIN)/python book/scripts/screenshots.py $(HTML) $(BUILDDIR)/screenshots --widths 1400 400

print-chapters:
	@echo $(CHAPTERS)

# ---------------------------------------------------------------------------- tests
# pytest's exit code 5 (nothing collected) is turned into a loud failure, per phase.
define run_pytest
	rc=0; $(BIN)/pytest $(2) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: $(1): pytest ran no test (exit 5); failing on purpose" >&2; exit 1; fi; \
	exit $$rc
endef

REPORTS := $(BUILDDIR)/test-reports

lint: setup
	@echo "== ruff check cameras tests"
	$(BIN)/ruff check cameras tests

pytest: setup
	@echo "== pytest tests/"
	@mkdir -p $(REPORTS)
	@$(call run_pytest,package tests,tests --junit-xml=$(REPORTS)/package.xml)

nbval: setup
	@echo "== nbval on the chapters in _toc.yml with CAMERAS_PROFILE=ci: $(SOURCE_NBS)"
	@if [ -z "$(strip $(SOURCE_NBS))" ]; then echo "ERROR: _toc.yml lists no chapter; nbval has nothing to run" >&2; exit 1; fi
	@for nb in $(SOURCE_NBS); do [ -f "$$nb" ] || { echo "ERROR: _toc.yml lists $$nb, which does not exist" >&2; exit 1; }; done
	@mkdir -p $(REPORTS)
	@export CAMERAS_PROFILE=ci; \
	$(call run_pytest,notebooks,-p no:cacheprovider --nbval-lax --nbval-kernel-name cameras --junit-xml=$(REPORTS)/notebooks.xml $(SOURCE_NBS))

# All three phases run even if one fails (make -k), then the summary; any failure -> exit 1.
test: check-data setup
	@start=$$(date +%s); rm -rf $(REPORTS); rc=0; \
	$(MAKE) --no-print-directory -k lint pytest nbval || rc=1; \
	echo "== make test summary (ruff, pytest tests/, nbval on $(words $(SOURCE_NBS)) chapter(s))"; \
	$(BIN)/python book/scripts/test_summary.py $(REPORTS)/package.xml $(REPORTS)/notebooks.xml || rc=1; \
	if [ $$rc -ne 0 ]; then echo "== make test FAILED after $$(( $$(date +%s) - start )) s (see above)" >&2; exit 1; fi; \
	echo "== make test passed in $$(( $$(date +%s) - start )) s"

# ---------------------------------------------------------------------------- cleaning
clean:
	rm -rf $(HTML) $(BUILDDIR)/.doctrees $(BUILDDIR)/jupyter_execute

clean-book: clean
	rm -rf $(EXECUTED)

distclean: clean-book
	rm -rf $(BUILDDIR) book/_static/mathjax $(VENV)

FORCE:
