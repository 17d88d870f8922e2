"""Block registry, filled from the ``jsccflow.blocks`` entry-point group.

Built-in blocks and third-party plugins register the same way: a package declares, in its
``pyproject.toml``::

    [project.entry-points."jsccflow.blocks"]
    my_blocks = "my_package.blocks:MY_BLOCKS"   # a Block subclass or a list of them

Two blocks with the same ``type_name`` are an error naming both entry points (never a silent
overwrite).
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from sdjscc_phy.core.block import Block
from sdjscc_phy.core.yaml_lines import brief
from sdjscc_phy.errors import RegistryError

ENTRY_POINT_GROUP = "jsccflow.blocks"

_registry: dict[str, tuple[type[Block], str]] | None = None


def _check_block_class(cls: object, origin: str) -> type[Block]:
    if not (isinstance(cls, type) and issubclass(cls, Block)):
        raise RegistryError(f"entry point '{origin}': {cls!r} is not a jsccflow Block subclass")
    if not cls.type_name:
        raise RegistryError(f"entry point '{origin}': block class {cls.__name__} has no type_name")
    if not cls.available_paths():
        raise RegistryError(
            f"entry point '{origin}': block '{cls.type_name}' implements neither process_host nor process_torch"
        )
    return cls


def _load() -> dict[str, tuple[type[Block], str]]:
    found: dict[str, tuple[type[Block], str]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        origin = f"{ep.name} = {ep.value}"
        try:
            loaded = ep.load()
        except Exception as err:  # a broken plugin must name itself, not crash the CLI
            raise RegistryError(f"entry point '{origin}' failed to load: {type(err).__name__}: {err}") from err
        classes = loaded if isinstance(loaded, (list, tuple)) else [loaded]
        for cls in classes:
            cls = _check_block_class(cls, origin)
            if cls.type_name in found and found[cls.type_name][0] is not cls:
                raise RegistryError(
                    f"block type '{cls.type_name}' is registered twice: by '{found[cls.type_name][1]}' and by '{origin}'"
                )
            found[cls.type_name] = (cls, origin)
    return found


def registry() -> dict[str, type[Block]]:
    """All registered block classes by type name (loaded once per process)."""
    global _registry
    if _registry is None:
        _registry = _load()
    return {name: cls for name, (cls, _) in _registry.items()}


def reload_registry() -> None:
    """Forget the loaded registry (after installing a plugin in the same process)."""
    global _registry
    _registry = None


def get_block_class(type_name: str) -> type[Block]:
    """The class registered as ``type_name``; RegistryError with a did-you-mean otherwise."""
    blocks = registry()
    if type_name in blocks:
        return blocks[type_name]
    hint = difflib.get_close_matches(type_name, list(blocks), n=1) if len(type_name) < 100 else []
    suffix = f"; did you mean '{hint[0]}'?" if hint else "; see `jsccflow blocks`"
    raise RegistryError(f"unknown block type {brief(type_name)}{suffix}")
