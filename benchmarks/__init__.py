"""avlearn's benchmarks: each module measures one thing and states its headline; run one as
``python -m benchmarks.<name>``. :mod:`benchmarks.harness` holds what they share, and
:mod:`benchmarks.readme_table` renders every results file's headline into ``docs/benchmarks.md``."""
