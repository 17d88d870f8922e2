"""The named choices of the PHY functions: constellations, demapping methods, fading coherence, LDPC
decoder rules.

They live apart from the Numba kernels and the torch functions that implement them so that block
declarations (which list them as parameter choices) and flowgraph validation import neither Numba nor
torch.
"""

#: Constellation name -> bits per complex symbol (Gray-labelled, unit average energy).
CONSTELLATIONS = {"bpsk": 1, "qpsk": 2, "qam16": 4, "qam64": 6}
#: Soft demapping: ``app`` is the exact log-sum-exp, ``maxlog`` its max approximation.
DEMAPPING_METHODS = ("app", "maxlog")
#: Rayleigh fading: ``block`` draws one h per item, ``fast`` one h per symbol.
COHERENCES = ("block", "fast")
#: LDPC belief-propagation check-node rules and update schedules.
LDPC_ALGORITHMS = ("boxplus", "boxplus-phi", "minsum", "normalized-minsum", "offset-minsum")
LDPC_SCHEDULES = ("layered", "flooding")
