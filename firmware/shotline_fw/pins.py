"""Pin assignments: GENERATED from hardware/pinmap.json by hardware/gen_pins.py; do not edit."""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

BOARD = 'Raspberry Pi Pico (RP2040)'
I2S_ID = const(0)
I2S_SCK = const(16)
I2S_WS = const(17)
I2S_SD = const(18)
GPS_UART_ID = const(0)
GPS_UART_TX = const(0)
GPS_UART_RX = const(1)
SD_SPI_ID = const(1)
SD_SPI_SCK = const(10)
SD_SPI_MOSI = const(11)
SD_SPI_MISO = const(12)
SD_SPI_CS = const(13)
GPS_PPS = const(2)
LED = 'LED'
