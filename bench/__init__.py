"""octotui's benchmark suite: `python -m bench` measures every figure of DESIGN.md's targets and
writes docs/BENCHMARKS.md. Never part of `make test`; see bench/__main__.py for the options."""
