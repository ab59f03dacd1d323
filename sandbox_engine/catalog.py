"""The languages a server offers, as clients see them, and whether their images are there."""

from __future__ import annotations

from .executor import Executor
from .languages import VERSION_LABEL, LanguageSpec


class Catalog:
    def __init__(self, languages: dict[str, LanguageSpec], executor: Executor) -> None:
        self.languages = languages
        self.executor = executor
        # Image labels never change under a running server; a missing image is asked about again.
        self._labels: dict[str, dict[str, str]] = {}

    def public(self) -> list[dict]:
        """Every language, with the version its image's build recorded (else the one expected)."""
        versions = self.versions()
        return [spec.public(versions[spec.id]) for spec in self.languages.values()]

    def versions(self) -> dict[str, str]:
        """Each language's version, as its image's build recorded it (else the one expected)."""
        return {
            spec.id: self.labels(spec.image).get(VERSION_LABEL + spec.id) or spec.version
            for spec in self.languages.values()
        }

    def readiness(self) -> str | None:
        """None when sessions can be served; else the reason they cannot."""
        return self.executor.check(sorted({spec.image for spec in self.languages.values()}))

    def labels(self, image: str) -> dict[str, str]:
        labels = self._labels.get(image)
        if labels is None:
            labels = self.executor.image_labels(image)
            if labels:
                self._labels[image] = labels
        return labels
