"""Datasets: built-in ones that work offline and loaders for the user's files."""
from .dataset import Dataset, kfold, load
from .builtin import BUILTINS
from .files import load_csv, load_npz
from .images import load_folder, load_idx, read_idx

__all__ = ["BUILTINS", "Dataset", "kfold", "load", "load_csv", "load_folder", "load_idx", "load_npz", "read_idx"]
