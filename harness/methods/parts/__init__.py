"""Pieces that several methods compose: samplers and schedules (:mod:`.sampling`),
α-loss terms (:mod:`.regularizers`) and perturbations of the edge weights the supernet
sees (:mod:`.perturbation`); no method registers here.
"""
