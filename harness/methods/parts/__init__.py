"""Small pieces that method files compose: α-loss terms (:mod:`.regularizers`) and
perturbations of the edge weights the supernet sees (:mod:`.perturbation`).

Nothing here registers a method; each piece is a pure function of tensors.
"""
