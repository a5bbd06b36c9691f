"""Shotline host toolkit: collect, associate, locate, classify and alert.

The pipeline, one module per stage::

    capture (firmware) -> detect -> trigger -> collect -> associate
                       -> locate -> classify -> alert

Units are SI and carried in names (``_s``, ``_m``, ``_hz``, ``_db``); times are
UTC; positions are local east/north/up metres inside and WGS84 at the edges.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # ``shotline.locate(...)`` without importing the (numpy/scipy) module at
    # ``import shotline`` time; the module itself is callable.
    if name == "locate":
        import importlib

        return importlib.import_module("shotline.locate")
    raise AttributeError(f"module 'shotline' has no attribute {name!r}")
