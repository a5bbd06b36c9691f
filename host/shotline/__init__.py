"""Shotline host toolkit: collect, associate, locate, classify and alert.

The pipeline, one module per stage::

    capture (firmware) -> detect -> trigger -> collect -> associate
                       -> locate -> classify -> alert

Units are SI and carried in names (``_s``, ``_m``, ``_hz``, ``_db``); times are
UTC; positions are local east/north/up metres inside and WGS84 at the edges.
"""

__version__ = "0.1.0"
