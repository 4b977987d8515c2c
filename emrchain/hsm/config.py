"""Where the HSM is and how to log in to it, without ever holding a PIN in configuration text.

The configuration names a PKCS#11 module, a token (by label: slot ids change when tokens are
added) and a PIN *source*: an environment variable or a file readable only by the node's user.
The PIN itself is read once, when the worker logs in, and is not stored anywhere else.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODULE_PATH = Path("/usr/lib/softhsm/libsofthsm2.so")


class PinUnavailableError(RuntimeError):
    """The configured PIN source is missing, empty or unsafe."""


@dataclass(frozen=True, slots=True)
class PinSource:
    """Exactly one of an environment variable name or a file path (mode 0600 or stricter)."""

    environment_variable: str | None = None
    file_path: Path | None = None

    def __post_init__(self) -> None:
        if (self.environment_variable is None) == (self.file_path is None):
            raise ValueError("a PIN source is exactly one of environment_variable or file_path")

    def read(self) -> str:
        """The PIN; PinUnavailableError if it cannot be read safely."""
        if self.environment_variable is not None:
            pin = os.environ.get(self.environment_variable, "")
            if not pin:
                raise PinUnavailableError(
                    f"environment variable {self.environment_variable} holds no HSM PIN"
                )
            return pin
        assert self.file_path is not None
        try:
            mode = self.file_path.stat().st_mode
            # Same rule as ssh for private keys: a PIN others can read is already disclosed.
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PinUnavailableError(
                    f"HSM PIN file {self.file_path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
                )
            lines = self.file_path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise PinUnavailableError(
                f"cannot read HSM PIN file {self.file_path}: {error}"
            ) from None
        pin = lines[0].strip() if lines else ""
        if not pin:
            raise PinUnavailableError(f"HSM PIN file {self.file_path} is empty")
        return pin

    def describe(self) -> str:
        """Where the PIN comes from, for messages (never the PIN)."""
        if self.environment_variable is not None:
            return f"env:{self.environment_variable}"
        return f"file:{self.file_path}"


@dataclass(frozen=True, slots=True)
class HsmConfig:
    """The PKCS#11 module, the token label and the PIN source of one node."""

    module_path: Path
    token_label: str
    pin_source: PinSource

    def __post_init__(self) -> None:
        if not self.token_label or len(self.token_label.encode()) > 32:
            raise ValueError("a PKCS#11 token label is 1 to 32 bytes")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> HsmConfig:
        """Build from a config table: `module_path`, `token_label`, and `pin_env` or `pin_file`.

        A `pin` key is refused outright: PINs do not belong in configuration files.
        """
        if "pin" in values:
            raise ValueError("an HSM PIN must not appear in configuration; use pin_env or pin_file")
        unknown = set(values) - {"module_path", "token_label", "pin_env", "pin_file"}
        if unknown:
            raise ValueError(f"unknown HSM settings: {sorted(unknown)}")
        pin_env = values.get("pin_env")
        pin_file = values.get("pin_file")
        if pin_env is not None and not isinstance(pin_env, str):
            raise ValueError("pin_env must be a string")
        if pin_file is not None and not isinstance(pin_file, str):
            raise ValueError("pin_file must be a string")
        token_label = values.get("token_label")
        if not isinstance(token_label, str):
            raise ValueError("token_label is required")
        module_path = values.get("module_path", str(DEFAULT_MODULE_PATH))
        if not isinstance(module_path, str):
            raise ValueError("module_path must be a string")
        return cls(
            module_path=Path(module_path),
            token_label=token_label,
            pin_source=PinSource(
                environment_variable=pin_env,
                file_path=Path(pin_file) if pin_file is not None else None,
            ),
        )
