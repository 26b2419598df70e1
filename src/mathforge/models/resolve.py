"""Turn a model name (known alias, local directory, or hub id) into a local model directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mathforge.errors import MathforgeError
from mathforge.models.cache import dir_size
from mathforge.models.embedded import embedded_dir, is_materialised, materialise_embedded
from mathforge.models.registry import KNOWN_MODELS, KnownModel
from mathforge.models.tiny import is_built, materialise_tiny, tiny_dir


def resolve_model(name_or_path: str) -> Path:
    """Local Hugging Face model directory for a known name, a directory, or a hub id.

    The embedded model is converted into ``$MATHFORGE_HOME`` on first use; a hub id is fetched
    into the Hugging Face cache when the machine is online (or found there when it is not).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MathforgeError(f"{path}: not a Hugging Face model directory (no config.json)")
        return path
    known = KNOWN_MODELS.get(name_or_path)
    if known is not None:
        if known.source == "embedded":
            return materialise_embedded()
        if known.source == "random":
            return materialise_tiny()
        return _from_hub(known.location)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~")):
        return _from_hub(name_or_path)
    names = ", ".join(KNOWN_MODELS)
    raise MathforgeError(
        f"unknown model '{name_or_path}': not a directory, a hub id (owner/name), or a known name ({names})"
    )


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:  # offline, missing repo, gated repo: all user-fixable
        cached = _hub_cached_dir(repo_id)
        if cached is not None:
            return cached
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MathforgeError(
            f"cannot fetch model '{repo_id}' from the Hugging Face hub ({reason}); "
            "pass a local model directory or a known name instead"
        ) from exc


def _hub_cached_dir(repo_id: str) -> Path | None:
    """The newest complete snapshot of ``repo_id`` in the local Hugging Face cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(config, str):
        return Path(config).parent
    return None


@dataclass(frozen=True)
class CachedModel:
    """One row of ``mathforge models``: a known name and where (if anywhere) it is cached."""

    model: KnownModel
    path: Path | None
    size_bytes: int | None


def list_models() -> list[CachedModel]:
    """Every known name with its local copy (if any) and size on disk; never downloads."""
    rows = []
    for model in KNOWN_MODELS.values():
        if model.source == "embedded":
            path = embedded_dir() if is_materialised() else None
        elif model.source == "random":
            path = tiny_dir() if is_built() else None
        else:
            path = _hub_cached_dir(model.location)
        rows.append(CachedModel(model, path, dir_size(path) if path is not None else None))
    return rows
