"""s2vc: suppressing static visual cues via normalizing flows (S²VC, AAAI 2022).

This package holds the ``s2vc`` command (``s2vc.cli``, ``s2vc.commands``) over the libraries
``s2vc.engine`` (the generator; it loads the compiled ops ``s2vc._C`` when they were built),
``s2vc.training`` and ``s2vc.export``. See docs/ARCHITECTURE.md.
"""
__version__ = "0.1.0"
