"""Runs first at power-on: reserve memory for IRQ tracebacks.

The SD card is opened by ``main.py`` (``Hardware.open_card``), which mounts
its first 64 MiB as FAT at /sd and gives the raw rest to the audio ring.
"""
import micropython

micropython.alloc_emergency_exception_buf(128)
