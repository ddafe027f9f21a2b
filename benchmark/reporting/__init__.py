"""Reports of MixBench studies, ablations and reproductions: loading, statistics, figures and
a Markdown + HTML document writer (`python -m benchmark.report` is the study report's CLI)."""
