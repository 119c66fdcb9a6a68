"""Rule detectors, one module per rule under ``<threat>/<name>.py`` with ``<name>.events.json``
beside it (positive and look-alike samples replayed by ``tests/test_detectors_rules.py``).

Nothing registers itself on import: ``detectors.registry.detector_classes`` lists them.
"""

__all__: list[str] = []
