"""Offline assets: the ``registry`` of pinned weights, word vectors and datasets, ``fetch`` (download,
verify, install in the cache) and ``convert`` (the format conversions run after extraction)."""

from fusion_lib.data.assets.convert import CATS_DOGS_CLASSES, CONVERSIONS
from fusion_lib.data.assets.fetch import (
    DOWNLOADERS,
    asset_file,
    fetch,
    fetch_all,
    imagenet_samples,
    load_word_vectors,
)
from fusion_lib.data.assets.registry import (
    ASSETS,
    MARKER,
    MATHJAX_FONTS,
    Asset,
    AssetChecksumError,
    AssetError,
    AssetUnavailableError,
    asset_dir,
    asset_table,
    cache_root,
    get_asset,
    is_fetched,
)

__all__ = [
    "ASSETS",
    "CATS_DOGS_CLASSES",
    "CONVERSIONS",
    "DOWNLOADERS",
    "MARKER",
    "MATHJAX_FONTS",
    "Asset",
    "AssetChecksumError",
    "AssetError",
    "AssetUnavailableError",
    "asset_dir",
    "asset_file",
    "asset_table",
    "cache_root",
    "fetch",
    "fetch_all",
    "get_asset",
    "imagenet_samples",
    "is_fetched",
    "load_word_vectors",
]
