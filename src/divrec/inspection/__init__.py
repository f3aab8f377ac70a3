"""Looking inside runs with TensorBoard: hparams with final metrics, attention maps, explanations, the item-embedding
projector and profiler traces."""
