"""Reading the config file's YAML: syntax errors with their line, duplicate keys as problems."""

from __future__ import annotations

from typing import Any

import yaml


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that records a key given twice in one mapping instead of keeping the last."""

    duplicate_keys: list[str]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key in seen and key != "<<":
                line = key_node.start_mark.line + 1
                self.duplicate_keys.append(f"line {line}: the key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse `text`; returns the top-level mapping (None if unusable) and the problems found."""
    loader = _StrictLoader(text)
    loader.duplicate_keys = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        return None, [f"invalid YAML: {_describe_yaml_error(exc)}"]
    except yaml.YAMLError as exc:
        return None, [f"invalid YAML: {exc}"]
    finally:
        loader.dispose()
    if data is None:
        return None, ["(top level): the config file is empty; server_name at least is required"]
    if not isinstance(data, dict):
        return None, ["(top level): expected a mapping of keys to values"]
    return data, list(loader.duplicate_keys)


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = error.problem or error.context or "syntax error"
    return f"{where}{problem}"
