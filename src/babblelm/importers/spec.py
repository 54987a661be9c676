"""What an importer is (importers/__init__.py has the registry and the shared machinery): the source
format's config.json `model_type`, the babblelm architecture it becomes, its config-key map and its
tensor-name map."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


class NameMap:
    """Tensor names of a source format <-> babblelm's, from (source, babblelm) pattern pairs in which
    `{i}`-style fields stand for layer or stage numbers: ("model.layers.{i}.mixer.q.weight",
    "model.layers.{i}.induction.q_proj.weight"). `squeezed` lists babblelm names whose source tensor
    has one more leading dimension of size 1."""

    def __init__(self, pairs: list[tuple[str, str]], squeezed: tuple[str, ...] = ()):
        self.pairs = [(self._compile(a), b, self._compile(b), a) for a, b in pairs]
        self.squeezed = {self._compile(name) for name in squeezed}

    @staticmethod
    def _compile(pattern: str) -> re.Pattern:
        return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>\\d+)", re.escape(pattern)) + "$")

    def babblelm_name(self, source: str) -> str | None:
        for source_re, target, _, _ in self.pairs:
            if match := source_re.match(source):
                return target.format(**match.groupdict())
        return None

    def source_name(self, target: str) -> str | None:
        for _, _, target_re, source in self.pairs:
            if match := target_re.match(target):
                return source.format(**match.groupdict())
        return None

    def source_shape(self, target: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1, *shape) if any(p.match(target) for p in self.squeezed) else shape


@dataclass(frozen=True)
class Importer:
    """A source format: its config.json `model_type`, the babblelm architecture it becomes, `config`
    (the source's config.json -> that architecture's config arguments; KeyError/ValueError name the
    key), the tensor `names` and a one-line `describe` of where the format comes from."""

    model_type: str
    arch: str
    describe: str
    config: Callable[[dict], dict]
    names: NameMap
