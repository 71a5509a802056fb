"""Declared hyperparameters: type, default and valid range (the GUI inspector is generated from these)."""
import math
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class HP:
    """One hyperparameter: kind is 'int', 'float', 'bool', 'choice', 'ints' (tuple of ints) or 'str'."""

    name: str
    kind: str
    default: object
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    doc: str = ""

    def check(self, value, where=""):
        """Return value converted to this kind, or raise ConfigError naming the layer and field."""
        at = f"{where}: {self.name}" if where else self.name
        k = self.kind
        if k == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{at} must be true or false, got {value!r}")
            return value
        if k in ("int", "float") and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{at} must be a finite number, got {value!r}")
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ConfigError(f"{at} must be a whole number, got {value!r}")
            value = int(value)
        elif k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{at} must be a number, got {value!r}")
            value = float(value)
        elif k == "choice":
            if value not in self.choices:
                opts = ", ".join(map(str, self.choices))
                raise ConfigError(f"{at} must be one of {opts}; got {value!r}")
            return value
        elif k == "ints":
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"{at} must be a list of whole numbers, got {value!r}")
            value = tuple(value)
            for v in value:
                self._range(v, at)
            return value
        elif k == "str":
            if not isinstance(value, str):
                raise ConfigError(f"{at} must be text, got {value!r}")
            return value
        else:
            raise ValueError(f"unknown hyperparameter kind {k!r}")
        self._range(value, at)
        return value

    def _range(self, v, at):
        if self.min is not None and v < self.min:
            raise ConfigError(f"{at} must be ≥ {self.min}, got {v}")
        if self.max is not None and v > self.max:
            raise ConfigError(f"{at} must be ≤ {self.max}, got {v}")

    def describe(self):
        """JSON-able description for UIs."""
        return {"name": self.name, "kind": self.kind, "default": self.default, "min": self.min,
                "max": self.max, "choices": list(self.choices), "doc": self.doc}


_RESOLVED = {}      # (id of the hparams, config as a key) -> (hparams, checked config): equal layers check once


def _key(config):
    """A hashable, type-exact form of a config (True and 1 differ), or None."""
    try:
        k = tuple(sorted((n, type(v), tuple((type(x), x) for x in v) if isinstance(v, (list, tuple)) else v)
                         for n, v in config.items()))
        hash(k)
        return k
    except TypeError:                                   # a value that is not hashable: checked, not memoised
        return None


def resolve(hps, config, where=""):
    """Fill defaults and check every value; unknown keys are an error."""
    key = _key(config)
    hit = _RESOLVED.get((id(hps), key)) if key is not None else None
    if hit is not None and hit[0] is hps:              # the entry holds hps, so its id cannot be reused meanwhile
        return dict(hit[1])
    out = _resolve(hps, config, where)
    if key is not None:
        if len(_RESOLVED) > 4096:
            _RESOLVED.clear()
        _RESOLVED[id(hps), key] = (hps, dict(out))
    return out


def _resolve(hps, config, where=""):
    known = {h.name for h in hps}
    extra = set(config) - known
    if extra:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(extra))}; "
                          f"known: {', '.join(sorted(known)) or 'none'}")
    return {h.name: h.check(config.get(h.name, h.default), where) for h in hps}
