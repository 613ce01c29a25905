"""DDColor colorization in plain torch (no ComfyUI imports).

* :mod:`.files` - the official checkpoints and their download URLs;
* :mod:`.loading` - reading and checking a checkpoint, building the model with spandrel;
* :mod:`.options` - presets, size rounding, precision: what the node's widgets mean;
* :mod:`.pipeline` - the batched colorize pipeline;
* :mod:`.lab`, :mod:`.upsample`, :mod:`.face_tone` - its steps;
* :mod:`.edge_chart` - the synthetic facade that measures colour bleeding (bench, tests).
"""
