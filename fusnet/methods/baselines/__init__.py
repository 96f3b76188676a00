"""The hashing baselines of the paper's Table 3, each one module (paper, options, head,
loss), registered in :data:`fusnet.methods.METHODS` when :mod:`fusnet.methods` is imported."""
