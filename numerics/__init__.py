"""Layer 1, pure numerics: the exact neighbour engine and its kernels, the learned
whitening, the stored vectors' format, list changes and union-find.

numpy and numba only: nothing here knows a database, a web request or the model.
"""
