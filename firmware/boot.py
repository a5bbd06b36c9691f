"""Runs first at power-on: reserve memory for IRQ tracebacks, mount the SD card.

The SD card (SPI, pins from shotline_fw.pins) is mounted at /sd when present;
it needs micropython-lib's driver: ``mpremote mip install sdcard``.  No card,
no driver: the firmware runs from flash and reports storage state itself.
"""
import micropython

micropython.alloc_emergency_exception_buf(128)

try:
    import os

    import machine
    import sdcard
    from shotline_fw import pins

    _spi = machine.SPI(pins.SD_SPI_ID, baudrate=10_000_000, sck=machine.Pin(pins.SD_SPI_SCK),
                       mosi=machine.Pin(pins.SD_SPI_MOSI), miso=machine.Pin(pins.SD_SPI_MISO))
    os.mount(sdcard.SDCard(_spi, machine.Pin(pins.SD_SPI_CS)), "/sd")
except Exception as exc:  # noqa: BLE001 -- no card or no driver: flash only
    print("boot: no SD card:", exc)
