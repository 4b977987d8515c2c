"""Build the compiled core (`emrchain._core._*`).

The compiled modules link libsodium (Ed25519) and OpenSSL's libcrypto (SHA-256 with the CPU's
SHA extensions). Set ``EMRCHAIN_NO_EXTENSIONS=1`` to install the pure-Python twins only.
"""

import os

from setuptools import Extension, setup

COMPILE_ARGS = ["-O3", "-fno-strict-aliasing", "-Wno-deprecated-declarations"]


def _extension(name: str, libraries: list[str]) -> Extension:
    return Extension(
        f"emrchain._core.{name}",
        sources=[f"emrchain/_core/{name}.pyx"],
        include_dirs=["emrchain/_core/include"],
        libraries=libraries,
        extra_compile_args=COMPILE_ARGS,
    )


def _extensions() -> list[Extension]:
    if os.environ.get("EMRCHAIN_NO_EXTENSIONS") == "1":
        return []
    from Cython.Build import cythonize

    modules = [
        _extension("_merkle", ["crypto"]),
        _extension("_txcheck", ["crypto"]),
        _extension("_writes", ["crypto"]),
        _extension("_absence", []),
        _extension("_anchors", []),
        _extension("_ed25519", ["sodium", "pthread"]),
    ]
    return cythonize(
        modules,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(ext_modules=_extensions())
