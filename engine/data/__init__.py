"""Datasets: built-in ones that work offline and loaders for the user's files."""
from .dataset import Dataset, kfold, load
from .builtin import BUILTINS
from .files import load_csv, load_npz

__all__ = ["BUILTINS", "Dataset", "kfold", "load", "load_csv", "load_npz"]
