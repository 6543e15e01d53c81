"""The one place the version and the distribution name are written.

pyproject.toml reads `__version__` from here (setuptools' dynamic version); `tinyllm.__version__`
and `tinyllm --version` print it. The distribution name differs from the import names because
`tinyllm` was taken on the package index by an unrelated project: `pip install tinyllm-engine`
gives `import tinyllm`, `import autograd` and the `tinyllm` command.
"""

__version__ = "0.1.0"
DISTRIBUTION = "tinyllm-engine"
