"""The games' reward models (linear, MLP, encoder head, ensemble) and oracles (Gaussian bump, LM).

Each module imports only what it needs (the MLP needs torch, the encoder and LM oracle the
text extra), so importing this package imports none of them.
"""
