"""The ops, one module per family. Each op is a `Function` subclass whose docstring gives its
forward formula and its vector-Jacobian product (VJP): given the upstream gradient `g` of the
output, the gradient of each input."""
