"""daemon: ``acknetd``, the long-running agent of one emulation. A thin edge: runs reconcile loops of the
layers below and holds no business logic of its own."""
