"""Names of the stream tags built-in blocks set at validation (see ``Block.propagate_tags``).

A tag is a fact about a port's items that blocks further down need but cannot read from the item
shape; it travels with the items through every block that does not consume it.
"""

#: On a symbol_mapper's symbols: ``(bits per item before padding, constellation name)``. The demapper
#: drops the padding's LLRs with it and consumes it; channels and taps read the constellation.
MAPPED_BITS = "mapped_bits"
#: On an ldpc_encoder's codeword bits: information bits per coded bit (k/n, multiplied over
#: concatenated codes); channels read it to turn Eb/N0 into Es/N0. The LDPC decoder consumes it.
CODE_RATE = "code_rate"
