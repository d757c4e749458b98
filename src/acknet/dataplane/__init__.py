"""dataplane: from the planned state to the kernel, in two halves — ``render`` (pure) and ``apply`` (kernel)."""
