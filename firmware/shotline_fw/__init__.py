"""Shotline sensor firmware: the pure-logic modules.

Everything here is valid MicroPython and CPython.  Hardware (I2S, UART, pins,
SD card, watchdog) is passed in by ``main.py`` on the board, or by a fake
hardware layer on the host, so the logic runs and is tested off the board.
Modules that both sides read (wire protocol, configuration defaults, detector
configuration) live here once; the host imports them as ``shotline_fw``.
"""
