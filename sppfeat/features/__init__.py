"""Images to SPP vectors: the descriptor network (descriptor), how a run uses the machine
(runtime), stopping cleanly (interrupts), writing the result (assemble), the `extract` pipeline
that ties them (pipeline) and the in-memory `describe` (in_memory)."""
