"""Reading the CIFAR-100 python files without trusting them.

The official archive holds Python-2 pickles, and unpickling runs whatever callables a pickle
names. `load_numpy_pickle` uses an Unpickler whose `find_class` resolves exactly three globals:
numpy's array reconstructor, `numpy.ndarray` and `numpy.dtype` (under their NumPy 1 and NumPy 2
module names), each behind a guard that allows only plain numeric dtypes. Everything else a
pickle can hold without globals (dicts, lists, tuples, strings, bytes, numbers) loads as usual;
any other global (os.system, builtins.eval, ...) is refused before it is called, with an error
naming the file and the global. Python-2 strings are decoded as latin-1, as NumPy requires for
the raw array bytes, so dict keys come back as `str` (see `plain_keys`).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .io import MTLReproError

# plain numeric dtypes only: an object dtype would let the array's state unpickle arbitrary objects
ALLOWED_DTYPES = frozenset({"b1", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8"})
_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, without a deprecated import


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    code = spec.decode("latin1") if isinstance(spec, bytes) else spec
    if not isinstance(code, str) or code.lstrip("<>|=") not in ALLOWED_DTYPES:
        raise pickle.UnpicklingError(f"dtype {spec!r} is not a plain numeric dtype")
    return np.dtype(code, bool(align), bool(copy))


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"array class {cls!r} is not numpy.ndarray")
    return _RECONSTRUCT(np.ndarray, shape, dtype_code)


_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def _check_arrays(value: Any, path: str) -> None:
    if isinstance(value, np.ndarray) and value.dtype.kind not in "buif":
        raise MTLReproError(f"{path}: array of dtype {value.dtype} refused")
    if isinstance(value, dict):
        for item in value.values():
            _check_arrays(item, path)
    elif isinstance(value, (list, tuple)):
        for item in value[:1]:  # lists here are labels/names: one look is enough for their type
            _check_arrays(item, path)


def load_numpy_pickle(path: Path, shown: str | None = None) -> Any:
    """The object in a (Python 2 or 3) pickle that holds only plain data and numeric arrays.
    Errors name `shown` (e.g. archive:member) or the path."""
    path = Path(path)
    if not path.is_file():
        raise MTLReproError(f"missing input file: {shown or path}")
    data, name = path.read_bytes(), shown or str(path)
    try:
        value = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise MTLReproError(f"{name}: refused or corrupt pickle: {err}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as err:
        raise MTLReproError(f"{name}: truncated or corrupt pickle ({type(err).__name__}: {err})") from None
    _check_arrays(value, name)
    return value


def plain_keys(record: Any, path: Path) -> dict[str, Any]:
    """A dict whose keys are str, whether the pickle stored them as Python-2 str or bytes."""
    if not isinstance(record, dict):
        raise MTLReproError(f"{path}: expected a dict in the pickle, got {type(record).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in record.items()}
